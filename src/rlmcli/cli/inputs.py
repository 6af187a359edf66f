"""`[FILE...] QUESTION` as `ask` and `search` take them: which words are files to ingest, which
name documents of -w to focus on, and one line that says what is wrong when they are neither (a
question not quoted, the query first as ripgrep takes it, a file that is not there, no question)."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Optional

from rlmcli.errors import UsageError, WorkspaceError


@dataclass
class Inputs:
    question: str
    paths: list[str] = field(default_factory=list)  # files to ingest
    focus: list[str] = field(default_factory=list)  # documents of -w the question is about


def _looks_like_a_file(name: str) -> bool:
    """`contract.pdf`, `docs/x`, `~/a`: a name, not a word of a question."""
    return not any(c.isspace() for c in name) and ("/" in name or bool(re.search(r"\w\.[A-Za-z0-9]{1,5}$", name)))


def _quoted(text: str) -> str:
    return f'"{text}"' if '"' not in text and "$" not in text and "`" not in text else shlex.quote(text)


def _is_file(name: str) -> bool:
    return name != "-" and not any(c.isspace() for c in name) and os.path.exists(os.path.expanduser(name))


def _close_files(name: str) -> str:
    """'; did you mean Contract.pdf?' from the files beside where `name` would be."""
    import difflib

    folder, base = os.path.split(os.path.expanduser(name))
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return ""
    close = difflib.get_close_matches(base, names, n=3, cutoff=0.6)
    if not close:
        lowered = {n.lower(): n for n in names}
        close = [lowered[base.lower()]] if base.lower() in lowered else []
    return f"; did you mean {', '.join(os.path.join(folder, c) for c in close)}?" if close else ""


def _existing(ws: Any) -> Any:
    """-w's workspace when it exists and holds documents, else None (FILEs will make it)."""
    return ws if ws is not None and ws.exists() and ws.documents() else None


def parse_inputs(verb: str, args: list[str], workspace: Optional[str], ws: Any = None) -> Inputs:
    """What `args` mean for `rlm VERB [FILE...] QUESTION [-w W]`; `ws` is -w's Workspace, if any.

    With -w naming a workspace that holds documents, a FILE must be one of them (by its path or
    its content) or name one: the question is then focused on it, and the workspace is never
    changed behind the user's back. With a new -w, FILEs are ingested into it."""
    noun = "question" if verb == "ask" else "query"
    if not args:
        raise UsageError(f"{verb} needs a {noun.upper()}")
    question, names = args[-1], args[:-1]
    if not question.strip():
        raise UsageError(f"the {noun} is empty")
    ws = _existing(ws)
    if _is_file(question):
        strays = [n for n in names if n != "-" and not _is_file(n) and not _names_document(ws, n)]
        if len(strays) == 1:  # `rlm search "termination" GPL-3`: ripgrep's order
            files = [n for n in names if n != strays[0]] + [question]
            raise UsageError(f"{question!r} is a file and {strays[0]!r} is not: the {noun} comes last, in quotes: "
                             f"rlm {verb} {' '.join(shlex.quote(f) for f in files)} {_quoted(strays[0])}")
        what = "folder" if os.path.isdir(os.path.expanduser(question)) else "file"
        raise UsageError(f"the {noun} is missing: {question!r} is a {what}; put the {noun} last, in quotes: "
                         f"rlm {verb} {' '.join(shlex.quote(a) for a in args)} \"...\"")
    found = Inputs(question)
    for name in names:
        if name == "-":
            found.paths.append(name)
        elif _is_file(name):
            _add_file(found, name, ws, workspace, verb, noun)
        else:
            doc, why = _document(ws, name)
            if doc is not None:
                found.focus.append(doc)
            elif _looks_like_a_file(name):
                raise UsageError(f"no such file {name!r}" + (_close_files(name) or (f" ({why})" if why else "")))
            elif "did you mean" in why:  # a misspelt document of -w
                raise UsageError(f"{why} (and no file {name!r} here)")
            else:
                raise UsageError(f"no such file {name!r} - quote the {noun}: rlm {verb} FILE \"...\"")
    return found


def _add_file(found: Inputs, name: str, ws: Any, workspace: Optional[str], verb: str, noun: str) -> None:
    if ws is None:
        found.paths.append(name)
        return
    doc = ws.doc_for_path(name, by_content=True)
    if doc is None:
        quoted = shlex.quote(name)
        raise UsageError(f"{name} is not in the workspace {workspace}: add it with `rlm ingest {quoted} -w {workspace}`, "
                         f"or ask about it alone: `rlm {verb} {quoted} \"...\"`" if verb == "ask" else
                         f"{name} is not in the workspace {workspace}: add it with `rlm ingest {quoted} -w {workspace}`, "
                         f"or search it alone: `rlm {verb} {quoted} \"...\"`")
    if ws.documents()[doc].source == str(os.path.realpath(os.path.expanduser(name))):
        found.paths.append(name)  # the file it came from: a changed one is ingested again (a stat when not)
    found.focus.append(doc)


def _document(ws: Any, name: str) -> tuple[str | None, str]:
    if ws is None:
        return None, ""
    try:
        return ws.resolve_doc(name), ""
    except WorkspaceError as exc:
        return None, str(exc)


def _names_document(ws: Any, name: str) -> bool:
    return _document(ws, name)[0] is not None


def chat_files(names: list[str]) -> list[str]:
    """`rlm chat FILE...`: files to ask about, each there (or '-'), else one line naming it."""
    for name in names:
        if name != "-" and not os.path.exists(os.path.expanduser(name)):
            raise UsageError(f"no such file {name!r}{_close_files(name)}")
    return names
