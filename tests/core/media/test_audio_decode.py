"""The block down-mix and the cached resampler give the per-frame / functional results."""

from __future__ import annotations

import av
import numpy as np
import pytest

from imd_core.media.audio_decode import _Mixdown, _mono, _resample
from tests.media_factory import write_clip


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("aac.mp4", {"channels": 2}),  # fltp
        ("opus6.mkv", {"channels": 6, "audio_codec": "libopus"}),  # fltp, 6 planes
        ("pcm.avi", {"channels": 2}),  # s16 packed: the per-frame path
    ],
)
def test_block_mixdown_equals_per_frame_mixdown(tmp_path, name, kw):
    path = write_clip(tmp_path / name, 0.6, audio_pattern="chirp", **kw)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        frames = [f for p in c.demux(a) for f in a.codec_context.decode(p)]
    mix = _Mixdown(0.05)  # blocks smaller than a second: exercises the block roll-over
    for f in frames:
        mix.add(f)
    got = mix.result()
    want = np.concatenate([_mono(f) for f in frames])
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.abs(want).max() > 0.3


def test_cached_resampler_matches_torchaudio():
    import torch
    import torchaudio.functional as taf

    rng = np.random.default_rng(0)
    x = rng.standard_normal(44100).astype(np.float32) * 0.3
    want = taf.resample(torch.from_numpy(x), 44100, 16000).numpy()
    got = _resample(x, 44100, 16000)
    assert got.shape == want.shape == (16000,) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5
    assert _resample(x, 44100, 16000) is not got and np.array_equal(_resample(x, 44100, 16000), got)
