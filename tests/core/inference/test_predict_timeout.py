"""`imd predict` bounds a decode that hangs inside FFmpeg: worker processes killed at a deadline.

The hanging input is the one of ``imd data check``'s test: an ``ffconcat`` list naming a
FIFO nobody writes to, which blocks in ``open(2)`` inside ``avformat_open_input``.
"""

from __future__ import annotations

import json
import os
import time

import av
import numpy as np
import pytest

from imd_core.cli.main import main
from imd_core.errors import DecodeError
from imd_core.inference.prefetch import UniformTimes
from imd_core.media.isolate import BoundedProcess
from tests.core.data.test_check_timeout import _hanging_clip
from tests.core.inference.conftest import write_clip

needs_fifo = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or "concat" not in av.formats_available,
    reason="needs named pipes (POSIX) and FFmpeg's concat demuxer",
)


@pytest.fixture()
def folder(tmp_path):
    write_clip(tmp_path / "a.mp4", 2.0)
    _hanging_clip(tmp_path)  # hangs.mp4, sorted between a.mp4 and c.mp4
    write_clip(tmp_path / "c.mp4", 1.0, audio_rate=None)
    return tmp_path


@needs_fifo
@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_hanging_file_times_out_and_the_others_are_processed(tiny_model_dir, folder, capsys, workers):
    t0 = time.monotonic()
    code = main(
        ["predict", str(folder), "--model", str(tiny_model_dir), "--json", "--device", "cpu",
         "--window", "1", "--decode-timeout", "1", "--decode-workers", workers]
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert code == 3
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(os.path.basename(r["path"]), r["start"]) for r in rows] == [
        ("a.mp4", 0.0), ("a.mp4", 1.0), ("c.mp4", 0.0)
    ]  # fmt: skip
    assert err.splitlines() == [
        f"{folder / 'hangs.mp4'}: decode timed out after 1 s (stopped; the file may be damaged, "
        "a pipe, or on a stalled disk)"
    ]
    # 1 s + 2 s grace + worker start-up (a fresh worker replaces the killed one) on a busy machine
    assert elapsed < 20, elapsed


def test_bounded_decodes_give_the_same_results(tiny_model_dir, tmp_path):
    from imd_core.inference.predictor import Predictor

    a = write_clip(tmp_path / "a.mp4", 2.5)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    paths = [a, tmp_path / "bad.mp4", a]
    runs = []
    for timeout in (None, 30.0):
        pred = Predictor(tiny_model_dir, device="cpu", threads=1, decode_workers=1, decode_timeout=timeout)
        try:
            for window in (None, 1.0):
                runs.append([(o.error, o.duration, o.results) for o in pred.predict_paths(paths, window)])
        finally:
            pred.close()
    assert runs[0] == runs[2] and runs[1] == runs[3]  # bit-identical results, errors and durations
    for run in runs:
        assert run[0][0] is None and run[0][2] and run[1][0] and run[1][2] == ()


def test_uniform_times_match_the_preprocessor():
    from imd_core.data.transforms import ClipPreprocessor

    pre = ClipPreprocessor(num_frames=8, sampling="uniform")
    for s, e in [(0.0, 1.0), (1.0, 3.3), (12.7, 16.7), (0.1, 0.10001)]:
        assert np.array_equal(UniformTimes(8)(s, e), pre.sample_times(s, e, train=False))


def _slow_items(seconds: list[float], *, on_extend):
    """A generator for the worker: sleeps before each item (a stand-in for a slow decode)."""
    for i, s in enumerate(seconds):
        time.sleep(s)
        yield i
    return "done"


def _raise_os_error(*, on_extend):
    """A decode that fails the way PyAV does (its errors are OSError subclasses)."""
    yield 0
    raise PermissionError("the demuxer refused the seek")


@pytest.mark.timeout(60)
def test_bounded_process_passes_os_errors_back_and_replaces_an_idle_dead_worker():
    proc = BoundedProcess()
    try:
        gen = proc.stream(_raise_os_error, timeout=10.0)
        assert next(gen) == 0
        pid = proc._proc.pid
        with pytest.raises(PermissionError, match="refused the seek"):
            next(gen)  # the function's own error, not "the decoding process crashed"
        assert proc._proc.pid == pid and proc._proc.is_alive()
        proc.abort()  # killed while idle
        proc._proc.join(5.0)
        assert list(proc.stream(_slow_items, [0.0], timeout=10.0)) == [0]
        assert proc._proc.pid != pid
    finally:
        proc.close()


@pytest.mark.timeout(60)
def test_bounded_process_deadline_counts_waiting_only_and_survives_abandon():
    proc = BoundedProcess()
    try:
        # the caller idles 1.5 s between items: not counted against the 1 s deadline
        got = []
        gen = proc.stream(_slow_items, [0.0, 0.0], timeout=1.0)
        for item in gen:
            got.append(item)
            time.sleep(1.5)
        assert got == [0, 1]
        # abandoned after the first item: the same worker takes the next job
        pid = proc._proc.pid
        gen = proc.stream(_slow_items, [0.0, 5.0], timeout=1.0)
        assert next(gen) == 0
        gen.close()
        assert list(proc.stream(_slow_items, [0.0], timeout=1.0)) == [0] and proc._proc.pid == pid
        # past the deadline: killed, a DecodeError, and a fresh worker after it
        t0 = time.monotonic()
        with pytest.raises(DecodeError, match="decode timed out after 1 s"):
            list(proc.stream(_slow_items, [30.0], timeout=1.0))
        assert time.monotonic() - t0 < 10 and proc._proc.pid != pid
        assert list(proc.stream(_slow_items, [0.0, 0.0], timeout=1.0)) == [0, 1]
    finally:
        proc.close()


@needs_fifo
@pytest.mark.timeout(90)
def test_a_file_cannot_claim_its_own_deadline(tiny_model_dir, tmp_path, capsys):
    """An ffconcat naming a pipe with `duration 1000000` held `--decode-timeout 5` for minutes:
    the claimed duration is capped by what the file's size can hold."""
    from imd_core.inference.prefetch import credible_seconds

    os.mkfifo(tmp_path / "stream.fifo")
    real = write_clip(tmp_path / "real.mp4", 2.0)
    liar = tmp_path / "liar.mp4"  # opens (the real clip), claims 1e6 s, then blocks on the pipe
    liar.write_text("ffconcat version 1.0\nfile real.mp4\nduration 1000000\nfile stream.fifo\n")
    assert credible_seconds(liar, 1e6) < 0.2 and credible_seconds(tmp_path / "stream.fifo", 1e6) == 0.0
    assert credible_seconds(real, 2.0) == 2.0  # an honest file keeps its whole duration
    t0 = time.monotonic()
    code = main(
        ["predict", str(liar), "--model", str(tiny_model_dir), "--device", "cpu", "--decode-timeout", "2"]
    )
    elapsed = time.monotonic() - t0
    assert code == 3 and "decode timed out after 2 s" in capsys.readouterr().err
    print(f"elapsed {elapsed:.1f} s")
    assert elapsed < 30, elapsed  # 2 s + 2 s grace + worker start-up, not 1,000,000 s
