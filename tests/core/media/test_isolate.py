"""map_bounded: results as calls finish, killed calls, crashed workers, extended deadlines."""

from __future__ import annotations

import os
import signal
import time

import pytest

from imd_core.media.isolate import map_bounded

pytestmark = pytest.mark.timeout(120)


def square_or_crash(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)  # what a decoder crash on a damaged file looks like
    return x * x


def sleep_then(x: float, extend: bool, on_extend=None) -> float:
    if extend:
        on_extend(x)  # "this one is long": more time for this call only
    time.sleep(x)
    return x


def test_results_crash_and_next_items_go_on():
    jobs = [((i,), {}) for i in range(6)]
    got = dict(map_bounded(square_or_crash, jobs, timeout=30, on_failure=lambda i, r: r, workers=2))
    assert set(got) == set(range(6))
    assert {i: got[i] for i in (0, 1, 2, 4, 5)} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert got[3].startswith("the decoding process crashed (exit code -11)") and "\n" not in got[3]


def test_deadline_kills_a_call_and_on_extend_moves_it():
    t0 = time.monotonic()
    jobs = [((0.05, False), {}), ((3.0, True), {}), ((60.0, False), {})]
    got = dict(
        map_bounded(sleep_then, jobs, timeout=0.5, on_failure=lambda i, r: r, workers=2, extendable=True)
    )
    assert got[0] == 0.05
    assert got[1] == 3.0  # 0.5 s + 3 s extension + 2 s grace: it finishes
    assert got[2].startswith("decode timed out after 0.5 s (stopped;")  # killed at 0.5 + 2 s
    assert time.monotonic() - t0 < 30
