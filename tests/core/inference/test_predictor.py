"""Predictor on a real tiny IMD model saved and loaded with the checkpoint code."""

import numpy as np
import pytest
import torch

from imd_core.errors import DeviceError
from imd_core.inference.predictor import Predictor, sample_frames
from imd_core.inference.streaming import StreamingEngine

from .conftest import ACTIONS, TAGS


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    return Predictor(tiny_model_dir, device="cpu", batch_size=4)


def test_whole_clip_result_is_complete(predictor, media_dir):
    (r,) = predictor.predict_path(media_dir / "a.mp4")
    assert (r.start, r.end) == (0.0, pytest.approx(3.0, abs=0.05))
    assert len(r.top) == 5 and {t.label for t in r.top} <= set(ACTIONS)
    assert [t.score for t in r.top] == sorted((t.score for t in r.top), reverse=True)
    assert len(r.scores) == len(ACTIONS) and sum(r.scores) == pytest.approx(1.0, abs=1e-5)
    assert r.top[0].score == pytest.approx(max(r.scores))
    a = r.audio
    assert a.present and len(a.tags) == 5 and {t.label for t in a.tags} <= set(TAGS)
    assert 0.0 <= a.relevance <= 1.0 and a.dropped == (a.relevance < predictor.relevance_threshold)
    assert a.savld_iou is not None and 0.0 <= a.savld_iou <= 1.0


def test_file_without_audio_is_valid_and_dropped(predictor, media_dir):
    (r,) = predictor.predict_path(media_dir / "sub" / "b.mp4")
    assert r.audio.present is False and r.audio.dropped is True and r.audio.tags == ()
    assert r.to_json_dict()["audio"]["relevance"] is None


def test_windows_batched_equal_windows_one_by_one(predictor, media_dir):
    batched = predictor.predict_path(media_dir / "a.mp4", window=1.0, hop=0.5)
    assert len(batched) == 5
    single = Predictor(predictor.model, device="cpu", batch_size=1)
    items = list(single.open(media_dir / "a.mp4", 1.0, 0.5))
    one_by_one = [single.predict_windows([it])[0] for it in items]
    for b, s in zip(batched, one_by_one, strict=True):
        assert (b.start, b.end) == (s.start, s.end)
        np.testing.assert_allclose(b.scores, s.scores, atol=1e-4)
        assert b.audio.relevance == pytest.approx(s.audio.relevance, abs=1e-4)


def test_predict_paths_keeps_order_and_reports_bad_files(predictor, media_dir):
    paths = [
        media_dir / "a.mp4",
        media_dir / "broken.mp4",
        media_dir / "sub" / "b.mp4",
        media_dir / "missing.mp4",
    ]
    outcomes = list(predictor.predict_paths(paths, window=1.0))
    assert [o.path for o in outcomes] == [str(p) for p in paths]
    assert [o.ok for o in outcomes] == [True, False, True, False]
    assert all(o.bad_input for o in outcomes if not o.ok)
    assert str(media_dir) not in outcomes[1].error  # the report adds the path itself
    assert [len(o.results) for o in outcomes] == [3, 0, 2, 0]
    assert outcomes[0].duration == pytest.approx(3.0, abs=0.05)


def test_streaming_engine_runs_the_real_model(predictor, media_dir):
    from imd_core.media.decode import decode_clip

    clip = decode_clip(media_dir / "a.mp4", fps=10)
    engine = StreamingEngine(predictor, window=1.0, hop=1.0, source="cam")
    for i, (frame, t) in enumerate(zip(clip.frames, clip.frame_times, strict=True)):
        engine.push_frame(frame, float(t))
        engine.push_audio(clip.audio[i * 1600 : (i + 1) * 1600], float(t), 16000)
    results = [r for r in iter(engine.run_once, None)]
    assert len(results) == 1 and results[0].path == "cam" and (results[0].start, results[0].end) == (1.0, 2.0)
    assert results[0].audio.present and results[0].latency > 0
    assert engine.stats.windows_skipped == 1 and engine.stats.windows_done == 1


def test_sample_frames_spreads_segment_centres():
    frames = np.arange(10)[:, None, None, None].repeat(3, axis=3).astype(np.uint8)
    assert sample_frames(frames, 5)[:, 0, 0, 0].tolist() == [1, 3, 5, 7, 9]
    assert sample_frames(frames[:2], 4)[:, 0, 0, 0].tolist() == [0, 0, 1, 1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_device_error(tiny_model_dir):
    with pytest.raises(DeviceError, match="--device cpu"):
        Predictor(tiny_model_dir, device="cuda")
