"""Ctrl-C in the middle of a cell (what `rlm chat` does with it): the cell stops, the variables stay;
a cell that will not stop costs a restart, never a hang; a late interrupt never kills an idle child."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from rlmcli.sandbox import Sandbox

FOREVER = "while True:\n    time.sleep(0.02)"


def _ctrl_c_after(seconds: float) -> threading.Timer:
    """SIGINT to the main thread, as a terminal's Ctrl-C reaches the parent (never the child:
    it runs in a session of its own)."""
    timer = threading.Timer(seconds, signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGINT))
    timer.start()
    return timer


def _run_interrupted(sandbox: Sandbox, code: str) -> None:
    timer = _ctrl_c_after(0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            sandbox.run(code)
    finally:
        timer.cancel()
    assert sandbox.busy  # the cell was sent and never answered


def test_ctrl_c_stops_the_cell_and_keeps_the_variables(sandbox: Sandbox) -> None:
    sandbox.run("kept = 41")
    _run_interrupted(sandbox, f"import time\nstarted = 1\n{FOREVER}")
    assert sandbox.interrupt() is True and not sandbox.busy
    out = sandbox.run("print(kept + started)")
    assert out.stdout == "42\n" and not out.restarted and not out.error


def test_requests_a_stopped_cell_still_makes_are_refused(sandbox: Sandbox) -> None:
    served: list[str] = []

    def answer(kind: str, payload: dict[str, Any]) -> str:
        served.append(kind)
        time.sleep(0.01)
        return "ok"

    sandbox.on_request = answer
    sandbox.run("kept = 'yes'")
    _run_interrupted(sandbox, "import time\nwhile True:\n    llm_query('again')")
    assert served and sandbox.interrupt() is True
    assert sandbox.run("print(kept)").stdout == "yes\n"


def test_a_cell_that_ignores_the_interrupt_is_restarted_not_waited_for(sandbox: Sandbox) -> None:
    sandbox.run("kept = 1")
    _run_interrupted(sandbox, f"import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n{FOREVER}")
    assert sandbox.interrupt(grace=1.0) is False  # after the grace period, not never
    out = sandbox.run("print('kept' in dir())")
    assert out.stdout == "False\n"  # restarted: a fresh namespace, and it works


def test_a_late_interrupt_does_not_kill_an_idle_child(sandbox: Sandbox) -> None:
    sandbox.run("kept = 7")
    assert sandbox.proc is not None
    os.kill(sandbox.proc.pid, signal.SIGINT)  # the cell had just finished when Ctrl-C came
    time.sleep(0.3)
    out = sandbox.run("print(kept)")
    assert out.stdout == "7\n" and not out.restarted
