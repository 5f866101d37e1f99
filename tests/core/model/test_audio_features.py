import numpy as np
import pytest
import torch

from imd_core.errors import DataError
from imd_core.model.audio_features import (
    AudioFeatureConfig,
    fbank_windows,
    prepare_waveform,
    waveform_to_fbank,
    window_starts,
)


def _reference(wave: np.ndarray, max_length: int = 1024) -> np.ndarray:
    from transformers import ASTFeatureExtractor

    fe = ASTFeatureExtractor(max_length=max_length)
    return fe(wave, sampling_rate=16000, return_tensors="np")["input_values"][0]


@pytest.mark.parametrize("seconds", [10.24, 3.0, 14.0])  # exact, short (padded), long (truncated)
def test_fbank_matches_ast_feature_extractor(seconds):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = waveform_to_fbank(wave).numpy()
    ref = _reference(wave)
    assert ours.shape == ref.shape == (1024, 128)
    assert np.abs(ours - ref).max() < 1e-4


def test_fbank_short_max_length_and_tensor_input():
    wave = torch.randn(30000) * 0.1
    cfg = AudioFeatureConfig(max_length=256)
    ours = waveform_to_fbank(wave, cfg)
    ref = _reference(wave.numpy(), max_length=256)
    assert ours.shape == (256, 128)
    assert np.abs(ours.numpy() - ref).max() < 1e-4
    # tiny input (shorter than one 25 ms window) still gives a padded fbank
    assert waveform_to_fbank(np.zeros(100, np.float32), cfg).shape == (256, 128)


def test_prepare_waveform_downmix_and_resample():
    sr = 44100
    t = torch.arange(sr) / sr
    left = torch.sin(2 * torch.pi * 440 * t)
    stereo = torch.stack([left, -left + 0.5])  # (2, N): mean is a constant 0.25
    mono = prepare_waveform(stereo, sr)
    assert mono.shape == (16000,)
    assert torch.allclose(mono[1000:-1000], torch.full((14000,), 0.25), atol=1e-3)
    # channels-last input and int16 PCM
    pcm = (left.numpy() * 32767).astype(np.int16)
    out = prepare_waveform(np.stack([pcm, pcm], axis=1), sr, channels_first=False)
    spec = torch.fft.rfft(out).abs()
    assert abs(int(spec.argmax()) - 440) <= 1  # the tone survives resampling at 1 Hz resolution
    with pytest.raises(DataError):
        prepare_waveform(np.zeros((2, 2, 2), np.float32), 16000)


def test_windowing_long_audio():
    cfg = AudioFeatureConfig(max_length=256)  # 2.56 s windows
    wave = torch.randn(16000 * 6)
    fb = fbank_windows(wave, cfg, hop_seconds=1.0)
    starts = window_starts(wave.numel(), cfg.num_samples, 16000)
    assert fb.shape == (len(starts), 256, 128)
    assert starts[-1] + cfg.num_samples == wave.numel()
    assert torch.equal(fb[1], waveform_to_fbank(wave[16000 : 16000 + cfg.num_samples], cfg))
    assert fbank_windows(torch.randn(1000), cfg).shape == (1, 256, 128)
