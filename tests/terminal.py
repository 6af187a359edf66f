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


class Shell:
    """An interactive bash in a tmux pane of `cols` x `rows` with rlm's completion installed, as
    `rlm --install-completion` would: keys are typed, the pane is read back."""

    def __init__(self, env: dict[str, str], cols: int = 80, rows: int = 24) -> None:
        import shlex
        import uuid

        self.socket = f"rlm-test-{uuid.uuid4().hex[:8]}"
        self._tmux("new-session", "-d", "-x", str(cols), "-y", str(rows), "bash --norc --noprofile")
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        bin_dir = shlex.quote(str(Path(sys.executable).parent))
        self.type(f"export {exports} PATH={bin_dir}:$PATH PS1='$ '; eval \"$(rlm --show-completion bash)\"; clear\n")
        self.wait_for("$")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        return done.stdout

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "0", "-l", text)

    def tab(self, times: int = 1) -> None:
        for _ in range(times):
            self._tmux("send-keys", "-t", "0", "Tab")
            time.sleep(0.3)

    def clear_line(self) -> None:
        self._tmux("send-keys", "-t", "0", "C-u")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-t", "0", "-p")

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")

    def close(self) -> None:
        self._tmux("kill-server")
