"""Hostile inputs to ingest: links out of the tree, special files, zip bombs, huge files, and an
ingest killed at any moment."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from rlmcli.workspace.store import Workspace
from tests.conftest import FIXTURES, run_rlm

_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss // 1024)
"""


def _rusage_run(*args: str) -> tuple[int, float, int]:
    """(exit status, seconds, peak RSS in MB of `rlm ARGS` and its helpers). Measured from a small
    wrapper process: a child forked from this (large) test process would count its pages."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "rlmcli", *args],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), time.monotonic() - started, int(out[1])


def test_symlinks_out_of_the_tree_are_skipped_with_a_reason(tmp_path: Path) -> None:
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret")
    tree = tmp_path / "project"
    tree.mkdir()
    (tree / "readme.md").write_text("# Project\nhello\n")
    (tree / "key.txt").symlink_to(secret)
    (tree / "inside.md").symlink_to(tree / "readme.md")  # inside the tree: fine (stored once)
    result = run_rlm("ingest", str(tree), "-w", str(tmp_path / "ws"))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert f"rlm: note: project/key.txt: skipped: a symlink to {secret}, outside the input directory" in err
    assert "--follow-symlinks" in err
    docs = json.loads((tmp_path / "ws" / "manifest.json").read_text())["documents"]
    assert len(docs) == 1 and sorted(docs)[0] in ("project-readme.md", "project-inside.md")  # one content, once
    assert "secret" not in "".join(p.read_text() for p in (tmp_path / "ws" / "docs").rglob("*.txt"))
    followed = run_rlm("ingest", str(tree), "-w", str(tmp_path / "ws2"), "--follow-symlinks")
    assert followed.returncode == 0
    assert "project-key.txt" in json.loads((tmp_path / "ws2" / "manifest.json").read_text())["documents"]


def test_fifos_devices_and_loops_in_a_directory_never_block(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "notes.txt").write_text("real notes\n")
    os.mkfifo(tree / "pipe")
    (tree / "loop").symlink_to(tree / "loop")
    (tree / "subdir").mkdir()
    (tree / "subdir" / "up").symlink_to(tree)  # a directory loop
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    (tree / "empty.py").write_text("")
    started = time.monotonic()
    result = run_rlm("ingest", str(tree), "-w", str(tmp_path / "ws"), "--follow-symlinks")
    err = result.stderr.decode()
    assert result.returncode == 0 and time.monotonic() - started < 20, err
    assert "tree/pipe: skipped: not a regular file (FIFO)" in err
    assert "tree/loop: skipped: symlink loop" in err and "tree/subdir/up: skipped: a symlink loop" in err
    assert "tree/dangling: skipped: no such file or directory" in err
    assert "1 empty" in err and "ingested 1 new" in err


def _bomb(source: Path, out: Path, megabytes: int) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename != "word/document.xml":
                zout.writestr(item, data)
                continue
            head, tail = data.split(b"<w:body>")
            para = b"<w:p><w:r><w:t>" + b"a" * 1000 + b"</w:t></w:r></w:p>"
            with zout.open(item.filename, "w", force_zip64=True) as fh:
                fh.write(head + b"<w:body>")
                for _ in range(megabytes):
                    fh.write(para * 1000)
                fh.write(tail[tail.rfind(b"</w:body>"):])


@pytest.mark.parametrize("megabytes", [150, 300])
def test_a_docx_bomb_is_refused_fast_and_small(tmp_path: Path, megabytes: int) -> None:
    bomb = tmp_path / "bomb.docx"
    _bomb(FIXTURES / "contract.docx", bomb, megabytes)
    assert bomb.stat().st_size < 2 << 20
    status, seconds, peak = _rusage_run("ingest", str(bomb), str(FIXTURES / "notes.md"), "-w", str(tmp_path / "ws"))
    assert status == 1 and seconds < 15 and peak < 300
    docs = json.loads((tmp_path / "ws" / "manifest.json").read_text())["documents"]
    assert list(docs) == ["notes.md"]  # the other input still went in
    why = run_rlm("ingest", str(bomb), "-w", str(tmp_path / "ws")).stderr.decode()
    assert "refused: part word/document.xml" in why and "a zip bomb?" in why


def test_a_large_text_file_streams_with_flat_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    line = "the agreement shall terminate upon notice of breach and payment is due within thirty days\n"
    with open(big, "w") as fh:
        for _ in range(60_000_000 // len(line)):
            fh.write(line)
    status, _, peak = _rusage_run("ingest", str(big), "-w", str(tmp_path / "ws"))
    assert status == 0 and peak < 250  # the file is 60 MB; read whole it would be several times that
    manifest = json.loads((tmp_path / "ws" / "manifest.json").read_text())
    assert manifest["documents"]["big.txt"]["pages"] > 18_000
    assert manifest["documents"]["big.txt"]["chars"] == big.stat().st_size


def _consistent(root: Path) -> None:
    """Manifest, document directories and index agree, whatever moment a writer died at."""
    ws = Workspace.open(root)  # settles an interrupted commit, as every command does
    manifest = json.loads((root / "manifest.json").read_text())
    docs = manifest["documents"]
    assert not (root / ".journal.json").exists()
    assert sorted(p.name for p in (root / "docs").iterdir()) == sorted(docs)
    for doc, rec in docs.items():
        meta = json.loads((root / "docs" / doc / "meta.json").read_text())
        assert meta["sha256"] == rec["sha256"] and len(list((root / "docs" / doc / "pages").iterdir())) == rec["pages"]
    with sqlite3.connect(root / "index.sqlite") as conn:
        indexed = dict(conn.execute("SELECT doc, sha256 FROM docs"))
        rows = conn.execute("SELECT DISTINCT doc, page FROM chunks").fetchall()
    assert indexed == {doc: rec["sha256"] for doc, rec in docs.items()}
    assert all(doc in docs and 1 <= int(page) <= docs[doc]["pages"] for doc, page in rows)
    assert {doc: rec.to_json() for doc, rec in ws.documents().items()} == docs


def test_an_ingest_killed_at_any_moment_leaves_a_consistent_workspace(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    batch = tmp_path / "batch"
    batch.mkdir()
    for i in range(400):
        (batch / f"doc{i:03d}.txt").write_text(f"document {i} about clause {i}\n" * 50)
    assert run_rlm("ingest", str(FIXTURES / "notes.md"), "-w", str(root)).returncode == 0
    rng = random.Random(7)

    def change(round_: int) -> None:  # every file changes each round: all replacements
        for i in range(400):
            (batch / f"doc{i:03d}.txt").write_text(f"round {round_} document {i}\n" * 50)

    change(0)
    started = time.monotonic()
    assert run_rlm("ingest", str(batch), "-w", str(root)).returncode == 0
    duration = time.monotonic() - started
    killed = 0
    for round_ in range(1, 9):
        change(round_)
        proc = subprocess.Popen([sys.executable, "-m", "rlmcli", "ingest", str(batch), "-w", str(root)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 1.0) * duration)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        _consistent(root)
    assert killed >= 4
    finished = run_rlm("ingest", str(batch), "-w", str(root))
    assert finished.returncode == 0
    _consistent(root)
    assert len(json.loads((root / "manifest.json").read_text())["documents"]) == 401
    shutil.rmtree(batch)
