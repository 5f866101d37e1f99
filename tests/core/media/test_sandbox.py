"""DecodeSandbox and run_bounded: deadlines, crashes, aborts from another thread, extensions."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from imd_core.errors import ConfigError, DecodeError
from imd_core.media.sandbox import DecodeSandbox, extend_deadline, run_bounded

pytestmark = pytest.mark.timeout(120)


def items(delays: list[float]):
    """Sleeps before each item: a stand-in for a slow or hanging decode."""
    for i, d in enumerate(delays):
        time.sleep(d)
        yield i
    return "end"


def square_or_crash(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)  # what a decoder crash on a damaged file looks like
    return x * x


def sleep_then(x: float, extend: bool) -> float:
    if extend:
        extend_deadline(x)  # "this one is long": more time for this job only
    time.sleep(x)
    return x


def raise_os_error():
    """A decode that fails the way PyAV does (its errors are OSError subclasses)."""
    yield 0
    raise PermissionError("the demuxer refused the seek")


def drain(gen):
    got = []
    while True:
        try:
            got.append(next(gen))
        except StopIteration as stop:
            return got, stop.value


def test_the_timeout_must_be_positive():
    with pytest.raises(ConfigError, match="> 0"):
        DecodeSandbox(0)


def test_run_bounded_results_crash_and_next_items_go_on():
    jobs = [((i,), {}) for i in range(6)]
    got = dict(run_bounded(square_or_crash, jobs, timeout=30, on_failure=lambda i, r: r, workers=2))
    assert {i: got[i] for i in (0, 1, 2, 4, 5)} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert got[3].startswith("the decoding process crashed (exit code -11)") and "\n" not in got[3]


def test_run_bounded_deadline_kills_a_job_and_extend_deadline_moves_it():
    t0 = time.monotonic()
    jobs = [((0.05, False), {}), ((3.0, True), {}), ((60.0, False), {})]
    got = dict(run_bounded(sleep_then, jobs, timeout=0.5, on_failure=lambda i, r: r, workers=2))
    assert got[0] == 0.05
    assert got[1] == 3.0  # 0.5 s + 3 s extension + 2 s grace: it finishes
    assert got[2].startswith("decode timed out after 0.5 s (stopped;")  # killed at 0.5 + 2 s
    assert time.monotonic() - t0 < 30


def test_os_errors_come_back_and_an_idle_dead_process_is_replaced():
    with DecodeSandbox(10.0, preload=()) as box:
        gen = box.stream(raise_os_error)
        assert next(gen) == 0
        pid = box._proc.proc.pid
        with pytest.raises(PermissionError, match="refused the seek"):
            next(gen)  # the job's own error, not "the decoding process crashed"
        assert box._proc.proc.pid == pid and box._proc.proc.is_alive()
        box._proc.proc.kill()  # died while idle
        box._proc.proc.join(5.0)
        assert drain(box.stream(items, [0.0])) == ([0], "end")
        assert box._proc.proc.pid != pid


def test_the_deadline_counts_waiting_only_and_survives_an_abandoned_job():
    with DecodeSandbox(1.0, preload=()) as box:
        got = []
        for item in box.stream(items, [0.0, 0.0]):  # the caller idles 1.5 s per item: not counted
            got.append(item)
            time.sleep(1.5)
        assert got == [0, 1]
        pid = box._proc.proc.pid
        gen = box.stream(items, [0.0, 5.0])
        assert next(gen) == 0
        gen.close()  # abandoned while holding an item: the same process takes the next job
        assert drain(box.stream(items, [0.0])) == ([0], "end") and box._proc.proc.pid == pid
        assert box.call(square_or_crash, 4) == 16  # a plain function: its return value
        t0 = time.monotonic()
        with pytest.raises(DecodeError, match="decode timed out after 1 s"):
            drain(box.stream(items, [30.0]))
        assert time.monotonic() - t0 < 10 and box._proc.proc.pid != pid
        assert drain(box.stream(items, [0.0, 0.0])) == ([0, 1], "end")


def test_abort_ends_only_the_named_wait_and_the_next_job_gets_a_fresh_process():
    with DecodeSandbox(60, preload=()) as box:
        assert box.waiting_key is None and not box.abort()  # nothing to abort between jobs
        gen = box.stream(items, [0.0, 30.0], key="a")
        assert next(gen) == 0
        assert not box.abort()  # the caller holds an item: not waiting, nothing killed
        calls: list[bool] = []
        timer = threading.Timer(1.0, lambda: calls.extend([box.abort("b"), box.abort("a")]))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(DecodeError, match="decode aborted"):  # long before 30 s
            next(gen)
        timer.join()
        assert calls == [False, True]  # another key, then ours
        assert time.monotonic() - t0 < 15
        assert drain(box.stream(items, [0.0], key="c")) == ([0], "end")


def test_cancelled_work_is_not_waited_for():
    with DecodeSandbox(60, preload=()) as box:
        with pytest.raises(Exception, match="cancelled"):
            drain(box.stream(items, [30.0], cancelled=lambda: True))
        assert drain(box.stream(items, [0.0])) == ([0], "end")
