"""IsolatedDecoder: a deadline, an abort from another thread that only hits the wait it names."""

from __future__ import annotations

import threading
import time

import pytest

from imd_app.isolated_decode import IsolatedDecoder
from imd_core.errors import ConfigError, DecodeError


def _items(delays: list[float], *, on_extend):
    """Worker side: sleeps before each item (a stand-in for a slow or hanging decode)."""
    for i, d in enumerate(delays):
        time.sleep(d)
        yield i
    return "end"


def _drain(gen):
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value


def test_the_timeout_must_be_positive():
    with pytest.raises(ConfigError, match="> 0"):
        IsolatedDecoder(0)


@pytest.mark.timeout(90)
def test_abort_ends_only_the_named_wait_and_the_next_stream_gets_a_fresh_process():
    dec = IsolatedDecoder(60, preload=())
    try:
        assert _drain(dec.stream(_items, [0.0, 0.0], key="a")) == ([0, 1], "end")
        assert not dec.waiting and not dec.abort()  # nothing to abort between streams

        gen = dec.stream(_items, [0.0, 30.0], key="a")
        assert next(gen) == 0
        assert not dec.abort()  # the caller holds an item: not waiting, nothing killed
        calls: list[bool] = []
        timer = threading.Timer(
            1.0, lambda: calls.extend([dec.abort("b"), dec.abort("a", min_wait=60), dec.abort("a")])
        )
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(DecodeError, match="crashed"):  # killed, long before 30 s or 60 s
            next(gen)
        timer.join()
        assert calls == [False, False, True]  # another key, a wait shorter than min_wait, then ours
        assert time.monotonic() - t0 < 15
        assert _drain(dec.stream(_items, [0.0], key="c")) == ([0], "end")  # a fresh process
    finally:
        dec.close()


@pytest.mark.timeout(90)
def test_a_wait_past_the_timeout_fails_and_the_decoder_goes_on():
    dec = IsolatedDecoder(0.5, preload=())
    try:
        dec.start()
        t0 = time.monotonic()
        with pytest.raises(DecodeError, match="decode timed out after 0.5 s"):
            _drain(dec.stream(_items, [30.0]))
        assert time.monotonic() - t0 < 15
        assert _drain(dec.stream(_items, [0.0, 0.0])) == ([0, 1], "end")
    finally:
        dec.close()
