"""The CLI: through Typer's runner for most commands, and a real subprocess where it matters."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from pdfgen import IMAGE_STREAM, make_pdf
from typer.testing import CliRunner

from rlmcli.cli import app
from tests.conftest import FIXTURES, run_rlm

runner = CliRunner()


def test_ingest_ls_show_rm(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["ingest", str(FIXTURES / "contract.pdf"), str(FIXTURES / "notes.md"), "-w", str(ws)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(ws)
    assert "ingested 2 new (9 pages" in result.stderr

    listing = runner.invoke(app, ["ls", "-w", str(ws)])
    assert listing.exit_code == 0
    lines = listing.stdout.splitlines()  # off a terminal: tab-separated, no header, no totals
    assert [line.split("\t")[:4] for line in lines] == [["contract.pdf", "pdf", "8", "546"], ["notes.md", "text", "1", "92"]]

    data = json.loads(runner.invoke(app, ["ls", "-w", str(ws), "--json"]).stdout)
    assert data["totals"]["documents"] == 2 and set(data["documents"]) == {"contract.pdf", "notes.md"}

    page = runner.invoke(app, ["show", "contract", "--page", "7", "-w", str(ws)])
    assert page.exit_code == 0 and page.stdout.startswith("6. Termination")
    assert "contract.pdf p.7/8" in page.stderr

    bad_page = runner.invoke(app, ["show", "contract.pdf", "--page", "99", "-w", str(ws)])
    assert bad_page.exit_code == 1
    assert bad_page.stderr.strip() == "rlm: error: contract.pdf has pages 1-8; there is no page 99"

    refused = runner.invoke(app, ["rm", "notes.md", "-w", str(ws)])  # off a terminal: only with --yes
    assert refused.exit_code == 2 and "notes.md (1 pages)" in refused.stderr and "--yes" in refused.stderr
    assert (ws / "docs" / "notes.md").exists()
    removed = runner.invoke(app, ["rm", "notes.md", "-w", str(ws), "--yes"])
    assert removed.exit_code == 0
    assert not (ws / "docs" / "notes.md").exists()
    assert list(json.loads((ws / "manifest.json").read_text())["documents"]) == ["contract.pdf"]


def test_named_workspace_lives_under_rlm_home_and_is_the_default_afterwards(rlm_home: Path) -> None:
    result = runner.invoke(app, ["ingest", str(FIXTURES / "page.html"), "-w", "faq"])
    assert result.exit_code == 0
    assert result.stdout.strip() == str(rlm_home / "workspaces" / "faq")
    listing = runner.invoke(app, ["ls"])  # no -w: the workspace used last
    assert "page.html" in listing.stdout and f"workspace: {rlm_home / 'workspaces' / 'faq'}" in listing.stderr


def test_workspaces_lists_and_prunes_only_old_automatic_ones(rlm_home: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["ingest", str(FIXTURES / "notes.md"), "-w", "named"])
    auto = runner.invoke(app, ["ingest", str(FIXTURES / "page.html")]).stdout.strip()
    assert Path(auto).parent == rlm_home / "auto"
    out = runner.invoke(app, ["workspaces"]).stdout
    assert "named\t1\t" in out and f"auto:{Path(auto).name}\t1\t" in out

    assert "pruned 0 automatic" in runner.invoke(app, ["workspaces", "--prune", "30"]).stderr
    old = time.time() - 40 * 86400
    os.utime(Path(auto) / ".last_used", (old, old))
    os.utime(rlm_home / "workspaces" / "named" / ".last_used", (old, old))
    refused = runner.invoke(app, ["workspaces", "--prune", "30"])
    # named by what it holds, as `rlm workspaces` shows it
    assert refused.exit_code == 2 and f"auto:{Path(auto).name[:6]} (page.html)" in refused.stderr and Path(auto).exists()
    pruned = runner.invoke(app, ["workspaces", "--prune", "30", "--yes"])
    assert "pruned 1 automatic" in pruned.stderr
    assert not Path(auto).exists() and (rlm_home / "workspaces" / "named").exists()


def test_missing_workspace_is_one_clear_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ls", "-w", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr == f"rlm: error: no rlm workspace at {tmp_path / 'nope'} (create one with `rlm ingest FILE -w {tmp_path / 'nope'}`)\n"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_rlm("--debug", "ls", "-w", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert b"Traceback" in result.stderr and b"WorkspaceError" in result.stderr


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; sys.argv=['rlm','--help']\nfrom rlmcli.cli import main\ntry: main()\nexcept SystemExit: pass\n"
            "heavy=[m for m in ('litellm','httpx','openai','pypdfium2','pypdf','docx','tiktoken') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Exit statuses: 0 ok, 1 error" in out.stdout
    assert "HEAVY []" in out.stderr


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    import pypdf

    d = tmp_path / "in"
    d.mkdir()
    files = {}
    files["good"] = shutil.copy(FIXTURES / "contract.pdf", d / "good.pdf")
    (d / "corrupt.pdf").write_bytes(b"%PDF-1.7\nnot a pdf at all\n" * 5)
    files["corrupt"] = d / "corrupt.pdf"
    (d / "truncated.pdf").write_bytes((FIXTURES / "contract.pdf").read_bytes()[:1500])
    files["truncated"] = d / "truncated.pdf"
    writer = pypdf.PdfWriter(clone_from=str(FIXTURES / "contract.pdf"))
    writer.encrypt(user_password="s3cret", owner_password="o", algorithm="RC4-128")
    with open(d / "locked.pdf", "wb") as fh:
        writer.write(fh)
    files["locked"] = d / "locked.pdf"
    files["scanned"] = make_pdf(d / "scanned.pdf", [["cover page text"], IMAGE_STREAM, IMAGE_STREAM])
    (d / "empty.txt").write_bytes(b"")
    files["empty"] = d / "empty.txt"
    (d / "sound.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + bytes(range(256)) * 4)
    files["binary"] = d / "sound.wav"
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    files["image"] = d / "image.png"
    (d / "latin1.txt").write_bytes("Kündigung mit einer Frist von drei Monaten zum Monatsende möglich.\n".encode("latin-1") * 30)
    files["latin1"] = d / "latin1.txt"
    (d / "broken.docx").write_bytes(b"PK\x03\x04garbage")
    files["docx"] = d / "broken.docx"
    os.symlink(d / "loop_b", d / "loop_a")
    os.symlink(d / "loop_a", d / "loop_b")
    files["loop"] = d / "loop_a"
    files["missing"] = d / "missing.pdf"
    return files


def test_each_bad_input_gets_one_line_and_the_rest_is_ingested(tmp_path: Path) -> None:
    files = _bad_inputs(tmp_path)
    ws = tmp_path / "ws"
    result = run_rlm("ingest", *(str(p) for p in files.values()), "-w", str(ws))
    err = result.stderr.decode()
    assert result.returncode == 1, err
    expected = {
        "corrupt": "corrupt or truncated PDF", "truncated": "corrupt or truncated PDF",
        "locked": "encrypted PDF: a password is required to open it", "empty": "empty file (0 bytes)",
        "binary": "binary file: not a supported document type", "image": "not a valid PNG image (corrupt or truncated?)",
        "docx": "not a valid DOCX file",
        "loop": "symlink loop", "missing": "no such file or directory",
    }
    for key, phrase in expected.items():
        lines = [ln for ln in err.splitlines() if ln.startswith("rlm: error: ") and files[key].name in ln]
        assert len(lines) == 1 and phrase in lines[0], (key, err)
    assert "rlm: warning: scanned.pdf: no text on pages 2-3 (scanned or blank?), even by OCR" in err
    assert "rlm: warning: latin1.txt: not UTF-8: decoded as" in err
    assert "; 9 failed" in err and "\x1b" not in err  # no control codes when stderr is not a terminal
    manifest = json.loads((ws / "manifest.json").read_text())
    assert sorted(manifest["documents"]) == ["good.pdf", "latin1.txt", "scanned.pdf"]
    assert manifest["documents"]["scanned.pdf"]["warnings"] == [
        "no text on pages 2-3 (scanned or blank?), even by OCR"]
    assert "Kündigung" in (ws / "docs/latin1.txt/pages/0001.txt").read_text()
    # nothing half-written is left anywhere in the workspace
    assert sorted(p.name for p in (ws / "docs").iterdir()) == ["good.pdf", "latin1.txt", "scanned.pdf"]
    assert not (ws / ".tmp").exists()


# PR_CAPBSET_DROP (24) of CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2), then exec the rest of
# argv: the new program runs as root without the right to read a chmod 000 file.
_DROP_DAC_CAPABILITIES = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "for cap in (1, 2):\n"
    "    if libc.prctl(24, cap, 0, 0, 0) != 0:\n"
    "        raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def test_unreadable_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("classified\n")
    secret.chmod(0)
    good = shutil.copy(FIXTURES / "notes.md", tmp_path / "notes.md")
    ws = tmp_path / "ws"
    prefix = None
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it (as setpriv would)
        prefix = [sys.executable, "-c", _DROP_DAC_CAPABILITIES]
    result = run_rlm("ingest", str(secret), str(good), "-w", str(ws), prefix=prefix)
    assert result.returncode == 1
    assert "rlm: error: secret.txt: permission denied (unreadable)" in result.stderr.decode()
    assert list(json.loads((ws / "manifest.json").read_text())["documents"]) == ["notes.md"]


def test_directory_honours_gitignore_and_skips_vcs_and_binaries(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / ".git" / "objects").mkdir(parents=True)
    (repo / ".git" / "config").write_text("[core]\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text("generated\n")
    (repo / ".gitignore").write_text("build/\n*.log\n")
    (repo / "src" / ".gitignore").write_text("secret.py\n")
    (repo / "src" / "main.py").write_text("def main():\n    return 'termination'\n")
    (repo / "src" / "secret.py").write_text("KEY = 1\n")
    (repo / "debug.log").write_text("noise\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n" + bytes(range(256)))
    (repo / "data.bin2").write_bytes(bytes(range(256)) * 4)
    (repo / "README.md").write_text("# Repo\n")
    result = runner.invoke(app, ["ingest", str(repo), "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.stderr
    docs = json.loads((tmp_path / "ws" / "manifest.json").read_text())["documents"]
    assert sorted(docs) == ["repo-readme.md", "repo-src-main.py", "repo-src.gitignore", "repo.gitignore"]
    assert docs["repo-src-main.py"]["name"] == "repo/src/main.py"
    assert "skipped 2 binary and 4 ignored" in result.stderr


def test_stdin_only_when_asked(tmp_path: Path) -> None:
    result = run_rlm("ingest", "-", "-w", str(tmp_path / "ws"), input=b"from a pipe\n")
    assert result.returncode == 0
    assert (tmp_path / "ws/docs/stdin/pages/0001.txt").read_text() == "from a pipe\n"


def test_thousands_of_small_files(tmp_path: Path) -> None:
    """3,000 files here; `make bench` ingests 10,000."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3_000):
        (many / f"f{i:05d}.txt").write_text(f"file {i} mentions clause {i}\n")
    result = run_rlm("ingest", str(many), "-w", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    assert "ingested 3000 new (3000 pages" in result.stderr.decode()
    manifest = json.loads((tmp_path / "ws" / "manifest.json").read_text())
    assert manifest["totals"]["documents"] == 3_000
    again = run_rlm("ingest", str(many), "-w", str(tmp_path / "ws"))
    assert "ingested 0 new, 3000 unchanged" in again.stderr.decode()


@pytest.mark.parametrize("bad", ["", ".hidden"])
def test_invalid_workspace_names_are_usage_errors(bad: str) -> None:
    result = runner.invoke(app, ["ingest", str(FIXTURES / "notes.md"), "-w", bad])
    assert result.exit_code == 2
    assert "invalid workspace name" in result.stderr


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    """`rlm ls | head -1`, `rlm config | grep -q model`: the reader closes the pipe, and the command
    exits 0 without a word (click and Rich would exit 1, Python would print a traceback)."""
    import subprocess

    ws = tmp_path / "ws"
    assert run_rlm("ingest", str(FIXTURES / "contract.pdf"), str(FIXTURES / "notes.md"), "-w", str(ws)).returncode == 0
    for args in (["ls", "-w", str(ws)], ["workspaces"], ["config"], ["search", "termination", "-w", str(ws)],
                 ["show", "contract.pdf", "-w", str(ws)]):
        proc = subprocess.Popen([sys.executable, "-m", "rlmcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the command has written anything: every write meets a closed pipe
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0 and b"Traceback" not in err, (args, err)
