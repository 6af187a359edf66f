"""The token-counting helper: counts equal tiktoken's in-process counts whatever happens to the helper.

The helper is only forked while no other thread runs, and a pytest process has threads (the fake
model server's), so the tests that need a helper run their body in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from rlmcli.tokens import TokenCounter, count_tokens_many

PAGES = [f"Section {i}: the lessee shall pay {i * 17} USD, see clause {i}.{i % 7}.\n" * 40 for i in range(60)]

_PRELUDE = """
import os, signal
from rlmcli.tokens import PIPE_BYTES, TokenCounter, count_tokens_many
PAGES = [f"Section {i}: the lessee shall pay {i * 17} USD, see clause {i}.{i % 7}.\\n" * 40 for i in range(60)]
counter = TokenCounter()
counter.start()
assert counter._pid > 0, "no helper was forked"
"""


def _in_fresh_interpreter(body: str) -> None:
    code = _PRELUDE + textwrap.dedent(body) + "\ncounter.close()\nprint('ok')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.endswith("ok\n"), result.stderr


def test_counts_match_in_process_counts() -> None:
    _in_fresh_interpreter("""
        assert counter.count(PAGES) == count_tokens_many(PAGES)
    """)


def test_a_batch_larger_than_the_pipe_arrives_whole() -> None:
    _in_fresh_interpreter("""
        big = [("word " * 1000 + "\\n") * 50 for _ in range(10)]  # ~2.5 MB, more than PIPE_BYTES
        assert sum(map(len, big)) > 2 * PIPE_BYTES
        assert counter.submit(big).result() == count_tokens_many(big)
    """)


def test_an_uncollected_answer_is_not_taken_for_the_next_one() -> None:
    # A document that fails after its pages were submitted never collects its counts.
    _in_fresh_interpreter("""
        counter.submit(PAGES[:5])
        assert counter.count(PAGES[5:9]) == count_tokens_many(PAGES[5:9])
    """)


def test_a_dead_helper_falls_back_to_counting_in_process() -> None:
    _in_fresh_interpreter("""
        pid = counter._pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert counter.count(PAGES) == count_tokens_many(PAGES)
        assert counter._pid == 0
    """)


def test_an_unused_helper_is_killed_on_close_without_waiting() -> None:
    _in_fresh_interpreter("""
        pid = counter._pid
        counter.close()
        try:
            os.kill(pid, 0)
            raise AssertionError("the helper is still alive")
        except ProcessLookupError:
            pass
        assert counter._pid == 0
    """)


def test_no_helper_is_forked_while_other_threads_run() -> None:
    """A fork while another thread imports could leave the helper waiting on that thread's
    import lock for ever; the counts then come from this process."""
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with TokenCounter() as counter:
            counter.start()
            assert counter._pid == 0
            assert counter.count(PAGES) == count_tokens_many(PAGES)
    finally:
        stop.set()
        other.join()
