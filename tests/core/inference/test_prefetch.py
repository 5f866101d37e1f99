"""Decoding ahead on threads: input order, errors where they belong, bounded, stoppable, same results."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from imd_core.errors import DecodeError
from imd_core.inference.predictor import Predictor
from imd_core.inference.prefetch import prefetch


def _produce(delays: dict[str, float], produced: list[str] | None = None):
    def produce(path: str):
        if path.startswith("bad"):
            time.sleep(delays.get(path, 0.0))
            raise DecodeError(f"{path}: cannot be read")
        for i in range(3):
            time.sleep(delays.get(path, 0.0) / 3)
            if produced is not None:
                produced.append(path)
            yield f"{path}#{i}"
        return f"{path} done"

    return produce


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_order_results_and_errors_like_the_sequential_path(workers):
    # later files finish first on their threads; they still come back in input order
    paths = ["a", "bad1", "b", "c", "bad2", "d"]
    delays = {"a": 0.15, "bad1": 0.1, "b": 0.05, "c": 0.0, "d": 0.0}
    seen = []
    for stream in prefetch(paths, _produce(delays), workers=workers, depth=2):
        try:
            items = list(stream)
        except DecodeError as exc:
            seen.append((stream.path, "error", str(exc)))
        else:
            seen.append((stream.path, items, stream.result))
    assert seen == [
        ("a", ["a#0", "a#1", "a#2"], "a done"),
        ("bad1", "error", "bad1: cannot be read"),
        ("b", ["b#0", "b#1", "b#2"], "b done"),
        ("c", ["c#0", "c#1", "c#2"], "c done"),
        ("bad2", "error", "bad2: cannot be read"),
        ("d", ["d#0", "d#1", "d#2"], "d done"),
    ]


def test_files_ahead_are_bounded_and_closing_stops_the_threads():
    produced: list[str] = []
    before = threading.active_count()
    streams = prefetch([f"f{i}" for i in range(50)], _produce({}, produced), workers=2, depth=1)
    first = next(streams)
    time.sleep(0.3)  # the producers run ahead as far as they may
    # 2 files in flight, each blocked after 1 queued item (+1 produced and waiting to be put)
    assert set(produced) <= {"f0", "f1"} and len(produced) <= 4
    assert next(iter(first)) == "f0#0"
    streams.close()  # the consumer stops early: producers are told to stop and joined
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
    assert set(produced) <= {"f0", "f1"}


def test_predict_paths_with_decode_workers_equals_sequential(tiny_model_dir, media_dir):
    paths = [
        media_dir / "a.mp4",
        media_dir / "broken.mp4",
        media_dir / "sub" / "b.mp4",
        media_dir / "missing.mp4",
        media_dir / "a.mp4",
    ]
    pred = Predictor(tiny_model_dir, device="cpu", batch_size=3)
    seq = list(pred.predict_paths(paths, window=1.0, hop=0.5, decode_workers=0))
    par = list(pred.predict_paths(paths, window=1.0, hop=0.5, decode_workers=2))
    assert [o.path for o in par] == [o.path for o in seq] == [str(p) for p in paths]
    assert [o.ok for o in par] == [o.ok for o in seq] == [True, False, True, False, True]
    assert [o.error for o in par] == [o.error for o in seq]
    assert [o.duration for o in par] == [o.duration for o in seq]
    for a, b in zip(par, seq, strict=True):
        assert [(r.start, r.end) for r in a.results] == [(r.start, r.end) for r in b.results]
        for ra, rb in zip(a.results, b.results, strict=True):
            np.testing.assert_allclose(ra.scores, rb.scores, atol=1e-5)
            assert ra.audio.present == rb.audio.present and ra.audio.dropped == rb.audio.dropped
    whole = list(pred.predict_paths(paths[:3], decode_workers=2))  # whole-clip windows: durations too
    assert [o.ok for o in whole] == [True, False, True] and whole[2].duration == pytest.approx(2.0, abs=0.1)


def test_auto_decode_workers_follow_the_device_and_free_cores(monkeypatch):
    import os

    import torch

    from imd_core.inference.predictor import auto_decode_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert auto_decode_workers(torch.device("cuda"), 4) == 2  # the model is on the GPU: decode ahead
    assert auto_decode_workers(torch.device("cpu"), 2) == 1  # a core is free for decoding
    assert auto_decode_workers(torch.device("cpu"), 4) == 0  # torch uses every core: threads would compete
