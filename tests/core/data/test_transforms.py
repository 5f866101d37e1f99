"""Sampling, spatial transforms, motion input and ClipPreprocessor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imd_core.data.transforms import (
    ClipPreprocessor,
    center_crop,
    dense_times,
    hflip,
    motion_from_frames,
    normalise,
    resize_short_side,
    three_crops,
    uniform_times,
)
from imd_core.errors import ConfigError, DataError


def _ramp(t=4, h=40, w=60):
    """Frames with a horizontal intensity ramp that moves right by 2 px per frame."""
    x = np.arange(w)[None, :] + np.zeros((h, 1))
    return np.stack([np.repeat(((x - 2 * i) * 4 % 256)[..., None], 3, axis=2) for i in range(t)]).astype(
        np.uint8
    )


def test_uniform_and_dense_sampling():
    np.testing.assert_allclose(uniform_times(0, 8, 4), [1, 3, 5, 7])
    rng = np.random.default_rng(0)
    t = uniform_times(0, 8, 4, rng)
    assert all(2 * i <= v < 2 * i + 2 for i, v in enumerate(t))
    d = dense_times(0, 10, 4, 0.5)
    np.testing.assert_allclose(np.diff(d), 0.5) and np.testing.assert_allclose(d.mean(), 5.0)
    r = dense_times(0, 10, 4, 0.5, np.random.default_rng(1))
    assert r[0] >= 0 and r[-1] < 10 and np.allclose(np.diff(r), 0.5)
    squeezed = dense_times(0, 1, 4, 0.5)  # window longer than the range
    assert squeezed[0] >= 0 and squeezed[-1] < 1


def test_spatial_transforms():
    f = np.zeros((2, 40, 60, 3), np.uint8)
    f[:, :, :30] = 255
    r = resize_short_side(f, 20)
    assert r.shape == (2, 20, 30, 3)
    assert center_crop(r, 20).shape == (2, 20, 20, 3)
    crops = three_crops(r, 20)
    # The white left half fills 15, 10 and 5 of the 20 columns of the start/centre/end crops.
    assert [round(float(c.mean()) / 255 * 20) for c in crops] == [15, 10, 5]
    assert hflip(f)[0, 0, -1, 0] == 255
    x = normalise(np.full((1, 2, 2, 3), 255, np.uint8), (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))
    assert x.shape == (1, 3, 2, 2) and torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 2.0, 1.0]))


def test_motion_diff_and_flow():
    frames = _ramp()
    d = motion_from_frames(frames, "diff")
    assert d.shape == frames.shape and d.dtype == np.float32
    np.testing.assert_allclose(d[0], (frames[1].astype(np.float32) - frames[0]) / 255.0)
    np.testing.assert_array_equal(d[-1], d[-2])
    assert not motion_from_frames(frames[:1]).any()

    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (1, 64, 80, 3)).astype(np.uint8)
    tex = np.stack([np.roll(tex[0], 3 * i, axis=1) for i in range(3)])  # 3 px right per frame
    import cv2

    tex = np.stack([cv2.GaussianBlur(f, (5, 5), 1.5) for f in tex])
    flow = motion_from_frames(tex, "flow")
    dx = flow[0, 16:-16, 16:-16, 0] * 20.0
    assert abs(np.median(dx) - 3.0) < 0.7
    with pytest.raises(ConfigError):
        motion_from_frames(frames, "nope")


def test_preprocessor_train_eval_and_multi_view():
    pre = ClipPreprocessor(num_frames=4, image_size=32, audio_seconds=1.0, test_clips=2, test_crops=3)
    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 60, 3)).astype(np.uint8)
    audio = (0.1 * np.sin(np.arange(16000) * 0.3)).astype(np.float32)
    out = pre(frames, audio, train=True, rng=np.random.default_rng(0))
    assert out["rgb"].shape == (4, 3, 32, 32) and out["motion"].shape == (4, 3, 32, 32)
    assert out["fbank"].shape == (100, 128) and out["audio_present"].item() is True
    ev1 = pre(frames, audio, train=False)
    ev2 = pre(frames, audio, train=False)
    assert torch.equal(ev1["rgb"], ev2["rgb"])  # evaluation is deterministic
    silent = pre(frames, None, train=False)
    assert silent["audio_present"].item() is False and silent["fbank"].shape == (100, 128)
    assert not torch.equal(silent["fbank"], ev1["fbank"])

    times = pre.sample_times(0.0, 8.0, train=False, multi_view=True)
    assert times.shape == (8,)
    np.testing.assert_allclose(times[:4], [0.5, 2.5, 4.5, 6.5])  # clip 1 of 2: segment quarter points
    mv = pre(np.concatenate([frames, frames]), audio, train=False, multi_view=True)
    assert mv["rgb"].shape == (6, 4, 3, 32, 32) and mv["motion"].shape == (6, 4, 3, 32, 32)
    with pytest.raises(DataError):
        pre(frames, audio, train=False, multi_view=True)  # needs test_clips x T frames
    assert pre.decode_size(True) == 37 and pre.decode_size(False) == 32


def test_audio_window_is_centred_and_padded():
    pre = ClipPreprocessor(audio_seconds=1.0)
    long = np.arange(20000, dtype=np.float32)
    np.testing.assert_array_equal(pre.audio_window(long)[:2], [2000, 2001])
    short = np.ones(1000, np.float32)
    w = pre.audio_window(short)
    assert w.shape == (16000,) and w[:1000].all() and not w[1000:].any()


def test_from_model_config_reads_the_input_fields():
    from imd_core.model.config import ModelConfig

    cfg = ModelConfig(size="tiny", labels=("a", "b"), motion="flow", image_mean=(0.4, 0.5, 0.6))
    pre = ClipPreprocessor.from_model_config(cfg, test_crops=3)
    assert (pre.num_frames, pre.image_size, pre.audio_seconds) == (
        cfg.num_frames,
        cfg.image_size,
        cfg.audio_seconds,
    )
    assert pre.motion == "flow" and pre.image_mean == (0.4, 0.5, 0.6) and pre.test_crops == 3
    assert ClipPreprocessor.from_dict(pre.to_dict()) == pre
    with pytest.raises(ConfigError):
        ClipPreprocessor(test_crops=2)


def test_preprocessor_motion_is_the_frame_difference_at_rgb_scale():
    pre = ClipPreprocessor(num_frames=4, image_size=32, image_std=(0.5, 0.25, 0.5), audio_seconds=0.5)
    frames = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    out = pre(frames, None, train=False)
    std = torch.tensor([0.5, 0.25, 0.5]).view(1, 3, 1, 1)
    ref = torch.from_numpy(motion_from_frames(frames, "diff")).permute(0, 3, 1, 2) / std
    assert torch.allclose(out["motion"], ref, atol=1e-5)
    flow = pre.replace(motion="flow")(frames, None, train=False)["motion"]
    assert flow.shape == (4, 3, 32, 32) and flow.abs().max() <= 1 / 0.25 + 1e-6


def test_prescaled_training_frames_are_only_cropped():
    pre = ClipPreprocessor(num_frames=2, image_size=32, audio_seconds=0.5)
    rng = np.random.default_rng(0)
    size = pre.train_decode_size(rng)
    assert 32 <= size <= round(32 * 1.15)
    frames = np.zeros((2, size, size + 10, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(size + 10, dtype=np.uint8)[None, None, :]  # column index in red
    out = pre(frames, None, train=True, rng=np.random.default_rng(3), prescaled=True)
    red = out["rgb"][0, 0] * 0.5 + 0.5  # undo normalisation -> x / 255
    cols = (red[0] * 255).round()
    steps = torch.diff(cols).abs()
    assert torch.all(steps == 1)  # consecutive source columns: cropped (maybe flipped), not resized
