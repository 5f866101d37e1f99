"""StreamingEngine scheduling, buffering and latency, on a fake clock.

The predictor here is a recording double so that timing is deterministic; the engine
runs a real tiny IMD model in test_predictor.py.
"""

import math

import numpy as np
import pytest

from imd_core.errors import DataError
from imd_core.inference.results import NO_AUDIO, LabelScore, WindowResult
from imd_core.inference.streaming import ClockedAudioRing, StreamingEngine


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingPredictor:
    num_frames = 4
    image_size = 32

    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.clock, self.cost, self.items = clock, cost, []

    def predict_windows(self, items):
        self.items.extend(items)
        self.clock.now += self.cost
        return [
            WindowResult(path=i.path, start=i.start, end=i.end, top=(LabelScore("x", 1.0),), audio=NO_AUDIO)
            for i in items
        ]


def _feed(engine, clock, t0, t1, fps=10.0, audio_sr=16000, block=0.1, shape=(24, 32, 3)):
    """Pushes frames and audio for media time [t0, t1) in real time order on the fake clock."""
    n = math.ceil((t1 - t0) * fps - 1e-9)
    for i in range(n):
        t = t0 + i / fps
        clock.now = 100.0 + t
        engine.push_frame(np.full(shape, i % 255, np.uint8), t)
        if audio_sr and abs((t / block) - round(t / block)) < 1e-6:
            engine.push_audio(np.ones(round(block * audio_sr), np.float32) * 0.1, t, audio_sr)


def test_window_is_due_only_when_video_and_audio_reach_its_end():
    clock = FakeClock()
    pred = RecordingPredictor(clock, cost=0.05)
    eng = StreamingEngine(pred, window=1.0, hop=0.5, clock=clock, keep_fps=None)
    _feed(eng, clock, 0.0, 1.0)  # last frame at 0.9: not due yet
    assert not eng.ready() and eng.run_once() is None
    _feed(eng, clock, 1.0, 1.1)  # frame at 1.0 and audio to 1.1
    assert eng.ready()
    res = eng.run_once()
    assert (res.start, res.end) == (0.0, 1.0)
    item = pred.items[-1]
    assert item.frames.shape == (11, 24, 32, 3)  # frames at 0.0 .. 1.0
    assert item.audio is not None and item.audio.shape == (16000,)
    assert res.latency == pytest.approx(0.05)  # last sample pushed at clock 101.0, result at 101.05
    assert eng.run_once() is None  # the next window (0.5-1.5) is not due


def test_slow_inference_newest_window_wins_and_skips_are_counted():
    clock = FakeClock()
    pred = RecordingPredictor(clock, cost=0.0)
    eng = StreamingEngine(pred, window=1.0, hop=0.5, clock=clock)
    _feed(eng, clock, 0.0, 3.1)
    clock.now += 0.4  # the worker was busy
    res = eng.run_once()
    assert (res.start, res.end) == (2.0, 3.0)  # windows 0..3 skipped
    st = eng.stats
    assert st.windows_skipped == 4 and st.windows_done == 1
    assert res.latency == pytest.approx(0.4, abs=1e-6) and st.last_latency == res.latency
    _feed(eng, clock, 3.1, 3.6)
    assert eng.run_once().start == 2.5 and eng.stats.windows_skipped == 4


def test_memory_stays_bounded_on_a_long_stream():
    clock = FakeClock()
    pred = RecordingPredictor(clock, cost=0.0)
    eng = StreamingEngine(pred, window=1.0, hop=0.5, clock=clock, keep_fps=8.0, frame_size=None)
    _feed(eng, clock, 0.0, 120.0, fps=30.0, audio_sr=48000, block=0.1, shape=(8, 8, 3))
    st = eng.stats
    assert st.frames_received == 3600
    assert st.buffered_frames <= (1.0 + 0.5 + 0.5) * 8 + 8
    assert st.buffered_audio_seconds <= 1.0 + 0.5 + 0.5 + 0.5 + 1e-6
    res = eng.run_once()
    assert res.end == pytest.approx(119.5) and st.windows_skipped == 0
    item = pred.items[-1]
    assert item.audio.shape == (16000,)  # 48 kHz resampled to the model's 16 kHz
    assert 7 <= item.frames.shape[0] <= 9  # thinned to ~8 fps


def test_video_only_source_has_no_audio_and_frames_are_downscaled():
    clock = FakeClock()
    pred = RecordingPredictor(clock, cost=0.0)
    eng = StreamingEngine(pred, window=0.5, hop=0.5, clock=clock, frame_size=16)
    _feed(eng, clock, 0.0, 0.6, audio_sr=0, shape=(48, 64, 3))
    assert eng.run_once() is not None
    item = pred.items[-1]
    assert item.audio is None and item.frames.shape[1:] == (16, 21, 3)


def test_late_audio_waits_at_most_the_grace_period():
    clock = FakeClock()
    pred = RecordingPredictor(clock, cost=0.0)
    eng = StreamingEngine(pred, window=1.0, hop=1.0, clock=clock, audio_grace=0.5, keep_fps=None)
    eng.push_audio(np.ones(1600, np.float32), 0.0, 16000)  # audio stops after 0.1 s
    _feed(eng, clock, 0.0, 1.2, audio_sr=0)
    assert not eng.ready()  # video at 1.1 < 1.0 + grace
    _feed(eng, clock, 1.2, 1.6, audio_sr=0)
    assert eng.run_once() is not None
    assert pred.items[-1].audio is None  # 10% coverage is below min_audio_coverage


def test_bad_frame_is_refused_and_time_going_back_restarts():
    clock = FakeClock()
    eng = StreamingEngine(RecordingPredictor(clock, 0.0), window=1.0, hop=1.0, clock=clock)
    with pytest.raises(DataError):
        eng.push_frame(np.zeros((4, 4), np.float32), 0.0)
    _feed(eng, clock, 10.0, 11.5, audio_sr=0)
    assert eng.run_once().start == 0.0
    _feed(eng, clock, 0.0, 1.05, audio_sr=0)  # a seek back to the start: windows restart at 0
    res = eng.run_once()
    assert (res.start, res.end) == (0.0, 1.0)


def test_audio_ring_fills_gaps_with_silence_and_wraps():
    ring = ClockedAudioRing(seconds=1.0)
    ring.push(np.ones(8000, np.float32), 0.0, 16000)
    ring.push(np.full(8000, 2.0, np.float32), 1.0, 16000)  # 0.5 s gap
    samples, covered = ring.read(0.5, 1.5)
    assert covered == pytest.approx(1.0)
    assert samples[:8000].max() == 0.0 and samples[8000:].min() == 2.0
    samples, covered = ring.read(0.0, 0.5)  # overwritten by the wrap: silence
    assert covered == 0.0 and not samples.any()


def test_pushes_from_another_thread_while_the_consumer_runs():
    import threading
    import time

    pred = RecordingPredictor(FakeClock(), cost=0.0)
    eng = StreamingEngine(pred, window=0.2, hop=0.1, keep_fps=50.0)  # real monotonic clock
    stop = threading.Event()

    def produce():
        t0 = time.monotonic()
        while not stop.is_set():
            t = time.monotonic() - t0
            eng.push_frame(np.zeros((8, 8, 3), np.uint8), t)
            eng.push_audio(np.zeros(160, np.float32), t, 16000)
            time.sleep(0.01)

    th = threading.Thread(target=produce)
    th.start()
    results = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        r = eng.run_once()
        if r is not None:
            results.append(r)
        time.sleep(0.005)
    stop.set()
    th.join()
    assert len(results) >= 5
    assert all(b.start > a.start for a, b in zip(results, results[1:], strict=False))
    assert all(r.latency is not None and 0 <= r.latency < 0.5 for r in results)
    assert eng.origin == pytest.approx(0.0, abs=0.01) and eng.stats.windows_done == len(results)
