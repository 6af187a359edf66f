"""`rlm` in a real pseudo-terminal of a given size, its output played into a terminal emulator
(pyte) that keeps the scrollback: what a person sees in a tmux pane, line by line."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Screen:
    raw: bytes  # everything the program wrote, control codes included
    lines: list[str]  # the scrollback and the screen, as seen at the end, trailing blanks dropped
    returncode: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def run_in_terminal(*args: str, cols: int = 80, rows: int = 24, env: dict[str, str | None] | None = None,
                    cwd: Path | None = None, keys: list[tuple[str, bytes]] | None = None,
                    timeout: float = 240) -> Screen:
    """`rlm ARGS` with stdin, stdout and stderr on one pty of `cols` x `rows`. `keys` are
    (text to wait for, bytes to type) pairs, typed in order once the text has appeared."""
    import pyte

    full_env = dict(os.environ, TERM="xterm-256color")
    for name in ("COLUMNS", "LINES"):  # Rich would take these over the terminal's own size
        full_env.pop(name, None)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "rlmcli", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=full_env, cwd=cwd, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    pending = list(keys or [])
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the pty has gone
                    break
                if not data:
                    break
                chunks.append(data)
            if pending and pending[0][0].encode() in b"".join(chunks):
                os.write(master, pending.pop(0)[1])
            if not ready and proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"rlm {' '.join(args)} did not finish within {timeout:g} s")
    finally:
        os.close(master)
    returncode = proc.wait(timeout=30)
    raw = b"".join(chunks)
    screen = pyte.HistoryScreen(cols, rows, history=100_000)
    pyte.ByteStream(screen).feed(raw)
    lines = ["".join(ch.data for ch in (row[x] for x in range(cols))).rstrip() for row in screen.history.top]
    lines += [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return Screen(raw, lines, returncode)
