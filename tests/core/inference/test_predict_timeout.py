"""`imd predict` bounds a decode that hangs inside FFmpeg: sandbox processes killed at a deadline.

The hanging input is the one of ``imd data check``'s test: an ``ffconcat`` list naming a
FIFO nobody writes to, which blocks in ``open(2)`` inside ``avformat_open_input``.
"""

from __future__ import annotations

import json
import os
import threading
import time

import av
import pytest

from imd_core.cli.main import main
from imd_core.media.sandbox import DecodeSandbox, credible_seconds
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
    # 1 s + 2 s grace + sandbox start-up (a fresh process replaces the killed one) on a busy machine
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


@needs_fifo
@pytest.mark.timeout(90)
def test_a_file_cannot_claim_its_own_deadline(tiny_model_dir, tmp_path, capsys):
    """An ffconcat naming a pipe with `duration 1000000` held `--decode-timeout 5` for minutes:
    the claimed duration is capped by what the file's size can hold."""
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
    assert elapsed < 30, elapsed  # 2 s + 2 s grace + sandbox start-up, not 1,000,000 s


@needs_fifo
@pytest.mark.timeout(120)
def test_a_callers_sandbox_aborts_a_file_by_path_and_reports_progress(tiny_model_dir, folder):
    """The app's batch tab: its own sandbox, cancelled files, an abort from another thread."""
    from imd_core.inference.predictor import Predictor

    paths = [str(folder / "a.mp4"), str(folder / "hangs.mp4"), str(folder / "c.mp4")]
    cancelled: set[str] = set()
    progress: list[tuple[str, float]] = []
    pred = Predictor(tiny_model_dir, device="cpu", threads=1)
    with DecodeSandbox(60.0) as box:

        def cancel_the_hang() -> None:  # as the controller does: mark it, then abort it
            while box.waiting_key != paths[1] or box.waited() < 0.5:
                time.sleep(0.05)
            cancelled.add(paths[1])
            assert box.abort(paths[1])

        canceller = threading.Thread(target=cancel_the_hang)
        canceller.start()
        t0 = time.monotonic()
        got = list(
            pred.predict_paths(
                paths,
                1.0,
                sandbox=box,
                cancelled=cancelled.__contains__,
                progress=lambda *a: progress.append(a),
            )
        )
        canceller.join()
        assert time.monotonic() - t0 < 30  # not the 60 s deadline
        assert [o.error for o in got] == [None, "decode aborted", None]
        assert progress == [(paths[0], 0.5), (paths[0], 1.0), (paths[2], 1.0)]
        cancelled.add(paths[0])  # cancelled before it starts: no window is decoded
        (out,) = pred.predict_paths(paths[:1], 1.0, sandbox=box, cancelled=cancelled.__contains__)
        assert out.error == "cancelled" and out.results == ()
    bounded = Predictor(tiny_model_dir, device="cpu", threads=1, decode_timeout=60.0)
    try:  # the same results as the predictor's own sandboxes
        want = list(bounded.predict_paths(paths[::2], 1.0, decode_workers=0))
    finally:
        bounded.close()
    assert [o.results for o in got[::2]] == [o.results for o in want]
