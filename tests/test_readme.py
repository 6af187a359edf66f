"""Every command line in the README's code blocks, run as written against the fake server, so the
README cannot drift from the tool. A line's expected exit status is 0 unless its comment says
`# exits N`. The files the README names (contract.pdf, annex.docx, ~/src/myrepo...) are made in a
scratch directory first; `rlm` is this checkout's."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, ROOT
from tests.fakeserver import FakeLLM, Reply

README = ROOT / "README.md"
OLLAMA = "http://localhost:11434/v1"  # the README's local-server example; here, the fake server


def _is_command(line: str) -> bool:
    return line.startswith(("rlm ", "export ")) or re.search(r"\|\s*rlm ", line) is not None


def _open_quote(line: str) -> bool:
    try:
        shlex.split(line, comments=True)
    except ValueError:  # "No closing quotation": the string goes on on the next line
        return True
    return False


def command_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every `rlm ...`, `... | rlm ...` and `export ...` line in a fenced block.
    As in a shell, a line ending in a backslash goes on on the next one, and so does a command whose
    quoted string is still open (its newlines kept); a command is numbered by its first line."""
    out: list[tuple[int, str]] = []
    inside = False
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            inside, pending = not inside, None
            continue
        if not inside:
            continue
        if pending is None:
            start, joined = number, line.strip()
        elif _is_command(pending[1]) and _open_quote(pending[1]):
            start, joined = pending[0], f"{pending[1]}\n{line.rstrip()}"
        else:
            start, joined = pending[0], f"{pending[1]} {line.strip()}"
        pending = None
        if joined.endswith("\\"):
            pending = (start, joined[:-1].rstrip())
        elif _is_command(joined) and _open_quote(joined):
            pending = (start, joined)
        elif _is_command(joined):
            out.append((start, joined))
    return out


def expected_status(line: str) -> int:
    found = re.search(r"#.*\bexits (\d+)", line)
    return int(found.group(1)) if found else 0


def _reply(prompt: str) -> str | Reply:
    """A model that looks first, then answers with a citation; asked for JSON (--schema), it fills
    every field by its type and cites the first document of the workspace."""
    schema = re.search(r"^JSON Schema: (.+)$", prompt, re.M)
    if prompt.startswith("Question:") and schema:
        doc = re.search(r"^- (\S+) \(", prompt, re.M)
        answer = _fill(json.loads(schema.group(1)), f"[{doc.group(1) if doc else 'contract.pdf'} p.1]")
        return f"```python\nprint(search('notice', k=1))\nFINAL({answer!r})\n```"
    if prompt.startswith("Question:"):
        return "Let me look.\n```python\nprint(search('termination notice', k=2))\n```"
    return "```python\nFINAL(\"180 days' written notice [contract.pdf p.7]\")\n```"


def _fill(schema: dict, cite: str) -> object:
    """A value valid under a (simple) schema: objects get every property and a _cite per field."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {**{k: _fill(v, cite) for k, v in props.items()}, "_cite": {k: cite for k in props}}
    if kind == "array":
        return [_fill(schema.get("items", {}), cite)]
    return {"integer": 180, "number": 1234.5, "boolean": True}.get(str(kind), "Ireland")


def _world(home: Path) -> Path:
    """The files the README's examples name, in a fresh working directory."""
    sys.path.insert(0, str(FIXTURES))
    from pdfgen import make_pdf

    cwd = home / "work"
    cwd.mkdir()
    shutil.copy(FIXTURES / "contract.pdf", cwd / "contract.pdf")
    shutil.copy(FIXTURES / "contract.docx", cwd / "annex.docx")
    make_pdf(cwd / "notes.pdf", [["Meeting notes", "The fees change in Annex B from 2027."]])
    (cwd / "notes.txt").write_text("Call notes: the customer wants a shorter notice period.\n")
    (cwd / "contracts").mkdir()
    for n in range(1, 11):  # the contract-review example: 10 contracts
        make_pdf(cwd / "contracts" / f"c{n:02}.pdf", [[f"Services Agreement {n}", f"Either party may end it on {30 * n} days' notice."],
                                                      ["Governing Law", "This Agreement is governed by the laws of Ireland."]])
    (cwd / "filings").mkdir()
    for company, revenue in (("contoso", 1200), ("fabrikam", 840), ("northwind", 310)):  # the filings example
        make_pdf(cwd / "filings" / f"{company}-2024-10k.pdf", [[f"{company.title()} Inc. Annual Report 2024",
                                                                f"Total revenue ${revenue} million. Net income ${revenue // 10} million."]])
    (cwd / "questions.txt").write_text("What are the termination clauses?\nWhat are the fees?\n")
    (cwd / "jobs.jsonl").write_text("\n".join(json.dumps(j) for j in (
        {"id": "t1", "question": "What are the termination clauses?", "files": ["contract.pdf"]},
        {"id": "t2", "question": "What are the fees?", "files": ["contract.pdf", "annex.docx"]})) + "\n")
    repo = home / "src" / "myrepo"
    (repo / "pkg").mkdir(parents=True)
    (repo / ".gitignore").write_text("build/\n")
    (repo / "pkg" / "app.py").write_text("def terminate(notice_days: int) -> bool:\n    return notice_days >= 180\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.py").write_text("ignored = True\n")
    return cwd


def test_readme_command_lines_run_as_written(tmp_path: Path) -> None:
    lines = command_lines(README.read_text(encoding="utf-8"))
    assert len([line for _, line in lines if not line.startswith("export ")]) >= 25  # the parser found them
    server = FakeLLM().start()
    server.responder("*", _reply)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "OPENAI_"))}
        env.update(HOME=str(tmp_path), RLM_HOME=str(tmp_path / "rlm-home"), RLM_CONFIG=str(tmp_path / "config.toml"),
                   RLM_MODEL="openai/gpt-4o-mini", RLM_API_BASE=server.base, RLM_RETRY_BASE="0.01", NO_COLOR="1",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
        cwd = _world(tmp_path)
        asked = 0
        for number, line in lines:
            command = line.replace(OLLAMA, server.base)
            if command.startswith("export "):  # the README's exports apply to the lines after them
                for assignment in shlex.split(command.split("#", 1)[0])[1:]:
                    name, _, value = assignment.partition("=")
                    env[name] = value
                continue
            result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
                                    capture_output=True, timeout=180)
            want = expected_status(line)
            assert result.returncode == want, (
                f"README.md:{number}: `{line}` exited {result.returncode}, not {want}\n"
                f"stdout: {result.stdout.decode()[-1500:]}\nstderr: {result.stderr.decode()[-1500:]}")
            assert b"Traceback" not in result.stderr, f"README.md:{number}: {result.stderr.decode()}"
            if re.match(r"rlm ask\b", command) and "--offline" not in command and ">" not in command:
                if "--schema" in command:
                    assert isinstance(json.loads(result.stdout), dict), f"README.md:{number}: {result.stdout!r}"
                else:
                    assert b"180 days' written notice" in result.stdout, f"README.md:{number}: {result.stdout!r}"
                asked += 1
    finally:
        server.stop()
    assert asked >= 4 and server.calls("llama3.1"), "the model examples reached the (fake) models they name"
    review = list(csv.DictReader((cwd / "review.csv").open(encoding="utf-8")))  # the contract-review table
    assert [r["document"] for r in review] == [f"c{n:02}.pdf" for n in range(1, 11)]
    assert {(r["status"], r["notice_days"], r["governing_law"]) for r in review} == {("answered", "180", "Ireland")}
    filings = json.loads((cwd / "filings.json").read_text())  # the filings example
    assert filings["status"] == "answered" and set(filings["data"]["items"][0]) == {
        "company", "fiscal_year", "revenue_usd_m", "net_income_usd_m"}


def test_the_parser_finds_lines_and_statuses() -> None:
    text = "x\n```\nrlm ls -w a   # list\necho hi\ncat f | rlm ingest -\nrlm ask q  # exits 3: a budget\n```\nrlm not-in-a-block\n"
    assert command_lines(text) == [(3, "rlm ls -w a   # list"), (5, "cat f | rlm ingest -"), (6, "rlm ask q  # exits 3: a budget")]
    assert [expected_status(line) for _, line in command_lines(text)] == [0, 0, 3]
    wrapped = ("```\nrlm ask -w deal \\\n    --max-cost 0.5 q  # exits 3\necho a \\\n  | rlm ingest -\n"
               "rlm ask --schema 'a int\n    b: the b' q  # it's\n{\"json\": \"isn't\n\"}\n```\n")
    assert command_lines(wrapped) == [(2, "rlm ask -w deal --max-cost 0.5 q  # exits 3"), (4, "echo a | rlm ingest -"),
                                      (6, "rlm ask --schema 'a int\n    b: the b' q  # it's")]


def test_shell_completion_script_and_completions() -> None:
    rlm = str(Path(sys.executable).parent / "rlm")
    script = subprocess.run(["bash", "-c", f"{rlm} --show-completion"], capture_output=True, env=dict(os.environ, SHELL="/bin/bash"))
    assert script.returncode == 0 and b"_RLM_COMPLETE=complete_bash" in script.stdout and b"complete -o default" in script.stdout
    env = dict(os.environ, _RLM_COMPLETE="complete_bash", COMP_WORDS="rlm ask --max-c", COMP_CWORD="2")
    assert subprocess.run([rlm], capture_output=True, env=env).stdout.split() == [b"--max-calls", b"--max-cost"]
    env.update(COMP_WORDS="rlm con", COMP_CWORD="1")
    assert subprocess.run([rlm], capture_output=True, env=env).stdout.split() == [b"config"]
