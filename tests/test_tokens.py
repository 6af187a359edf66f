"""The token-counting helper: counts equal tiktoken's in-process counts whatever happens to the helper."""

from __future__ import annotations

import os
import signal

from rlmcli.tokens import PIPE_BYTES, TokenCounter, count_tokens_many

PAGES = [f"Section {i}: the lessee shall pay {i * 17} USD, see clause {i}.{i % 7}.\n" * 40 for i in range(60)]


def test_counts_match_in_process_counts() -> None:
    with TokenCounter() as counter:
        counter.start()
        assert counter.count(PAGES) == count_tokens_many(PAGES)


def test_a_batch_larger_than_the_pipe_is_sent_in_two_parts() -> None:
    big = [("word " * 1000 + "\n") * 50 for _ in range(10)]  # ~2.5 MB, more than PIPE_BYTES
    assert sum(map(len, big)) > 2 * PIPE_BYTES
    with TokenCounter() as counter:
        counter.start()
        assert counter.submit(big).result() == count_tokens_many(big)


def test_a_send_takes_what_the_pipe_holds_and_keeps_the_rest() -> None:
    from rlmcli.tokens import _write_some

    r, w = os.pipe()
    try:
        data = os.urandom(3 << 20)
        rest = _write_some(w, data)  # nobody reads yet: must not block
        assert 0 < len(rest) < len(data) and os.get_blocking(w)
        received = bytearray()
        while len(received) < len(data) - len(rest):
            received += os.read(r, 1 << 20)
        assert bytes(received) + rest == data
    finally:
        os.close(r)
        os.close(w)


def test_an_uncollected_answer_is_not_taken_for_the_next_one() -> None:
    # A document that fails after its pages were submitted never collects its counts.
    with TokenCounter() as counter:
        counter.start()
        counter.submit(PAGES[:5])
        assert counter.count(PAGES[5:9]) == count_tokens_many(PAGES[5:9])


def test_a_dead_helper_falls_back_to_counting_in_process() -> None:
    with TokenCounter() as counter:
        counter.start()
        pid = counter._pid
        assert pid > 0  # (kill(0) would hit this whole process group)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert counter.count(PAGES) == count_tokens_many(PAGES)
        assert counter._pid == 0


def test_an_unused_helper_is_killed_on_close_without_waiting() -> None:
    counter = TokenCounter()
    counter.start()
    pid = counter._pid
    assert pid > 0
    counter.close()
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive and counter._pid == 0


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
