"""AST audio preprocessing: waveform -> normalised Kaldi log-mel filterbank.

Matches ``transformers.ASTFeatureExtractor`` to within 1e-4 (tested), but works on one
clip and also accepts other sample rates and multi-channel audio. Shapes: ``N`` samples,
``F`` fbank frames, ``M`` mel bins.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from imd_core.config_base import FrozenConfig
from imd_core.errors import ConfigError, DataError

# AudioSet statistics used by the public AST checkpoints (paper / ASTFeatureExtractor).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
_FRAME_LENGTH = 400  # 25 ms at 16 kHz: Kaldi's default window
_FRAME_SHIFT = 160  # 10 ms hop


@dataclasses.dataclass(frozen=True)
class AudioFeatureConfig(FrozenConfig):
    """The fields of a ``preprocessor_config.json`` that define AST input."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    max_length: int = 1024  # fbank frames after padding/truncation
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD
    do_normalize: bool = True

    @classmethod
    def from_model_config(cls, cfg: Any) -> AudioFeatureConfig:
        """Reads ``sample_rate``, ``num_mel_bins`` and ``audio_seconds`` of a ModelConfig."""
        return cls(
            sample_rate=int(cfg.sample_rate),
            num_mel_bins=int(cfg.num_mel_bins),
            max_length=int(round(float(cfg.audio_seconds) * 100)),
        )

    @property
    def num_samples(self) -> int:
        """Samples that fill exactly ``max_length`` frames (163,840 for 1024 frames)."""
        return (self.max_length - 1) * _FRAME_SHIFT + _FRAME_LENGTH

    def to_hf_dict(self) -> dict[str, Any]:
        """An ``ASTFeatureExtractor``-compatible ``preprocessor_config.json`` body."""
        return {
            "feature_extractor_type": "ASTFeatureExtractor",
            "feature_size": 1,
            "sampling_rate": self.sample_rate,
            "num_mel_bins": self.num_mel_bins,
            "max_length": self.max_length,
            "padding_value": 0.0,
            "do_normalize": self.do_normalize,
            "mean": self.mean,
            "std": self.std,
            "return_attention_mask": False,
        }


def _as_tensor(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(wave, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if isinstance(wave, torch.Tensor):
        return wave.detach().to("cpu", torch.float32)
    raise DataError(f"audio must be a numpy array or a torch tensor, got {type(wave).__name__}")


def prepare_waveform(
    wave: np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    channels_first: bool = True,
    target_rate: int = 16000,
) -> torch.Tensor:
    """Down-mixes to mono and resamples to ``target_rate``.

    Args:
        wave: ``(N,)`` mono, or ``(C, N)`` (``channels_first``) / ``(N, C)`` audio, float
            in [-1, 1] or int16 PCM (scaled to [-1, 1]).
        sample_rate: rate of ``wave`` in Hz.
        channels_first: layout of 2-D input.
        target_rate: output rate (16 kHz for AST).

    Returns:
        float32 tensor ``(N',)`` at ``target_rate``.
    """
    if isinstance(wave, np.ndarray) and wave.dtype == np.int16:
        wave = wave.astype(np.float32) / 32768.0
    x = _as_tensor(wave)
    if x.ndim == 2:
        x = x.mean(dim=0 if channels_first else 1)  # average channels: plain down-mix
    elif x.ndim != 1:
        raise DataError(f"audio must be (N,) or (channels, N), got shape {tuple(x.shape)}")
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate must be positive, got {sample_rate}")
    if sample_rate != target_rate and x.numel() > 0:
        import torchaudio.functional as taf  # heavy; only when resampling is needed

        x = taf.resample(x, orig_freq=int(sample_rate), new_freq=int(target_rate))
    return x.contiguous()


def waveform_to_fbank(
    wave_16k_mono: np.ndarray | torch.Tensor,
    config: AudioFeatureConfig | None = None,
    *,
    max_length: int | None = None,
) -> torch.Tensor:
    """Computes the normalised AST input of one 16 kHz mono clip.

    Same steps as ``ASTFeatureExtractor``: Kaldi fbank (Hanning window, 25 ms / 10 ms,
    ``num_mel_bins`` bins), zero-pad or truncate to ``max_length`` frames, then
    ``(x - mean) / (2 * std)``.

    Args:
        wave_16k_mono: ``(N,)`` float waveform at ``config.sample_rate``.
        config: feature settings; AST defaults (1024 frames, 128 bins) when omitted.
        max_length: overrides ``config.max_length``.

    Returns:
        float32 tensor ``(F, M)``.
    """
    import torchaudio.compliance.kaldi as ta_kaldi

    cfg = config or AudioFeatureConfig()
    frames = int(max_length or cfg.max_length)
    x = _as_tensor(wave_16k_mono)
    if x.ndim != 1:
        raise DataError(
            f"waveform_to_fbank takes mono (N,) audio, got shape {tuple(x.shape)}; use prepare_waveform"
        )
    if x.numel() < _FRAME_LENGTH:
        # Kaldi needs one full window; the extractor would fail on such audio, we pad.
        x = torch.nn.functional.pad(x, (0, _FRAME_LENGTH - x.numel()))
    fbank = ta_kaldi.fbank(
        x.unsqueeze(0), sample_frequency=cfg.sample_rate, window_type="hanning", num_mel_bins=cfg.num_mel_bins
    )  # (F0, M)
    n = fbank.shape[0]
    if n < frames:
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, frames - n))
    else:
        fbank = fbank[:frames]
    if cfg.do_normalize:
        fbank = (fbank - cfg.mean) / (cfg.std * 2)
    return fbank.contiguous()


def window_starts(num_samples: int, window_samples: int, hop_samples: int) -> list[int]:
    """Start offsets of windows covering ``num_samples``; the last window ends at the end.

    A clip shorter than one window gets one window (padded later).
    """
    if hop_samples <= 0 or window_samples <= 0:
        raise ConfigError("window and hop lengths must be positive")
    if num_samples <= window_samples:
        return [0]
    count = math.ceil((num_samples - window_samples) / hop_samples) + 1
    starts = [i * hop_samples for i in range(count)]
    starts[-1] = num_samples - window_samples
    return sorted(set(starts))


def fbank_windows(
    wave_16k_mono: np.ndarray | torch.Tensor,
    config: AudioFeatureConfig | None = None,
    *,
    hop_seconds: float | None = None,
) -> torch.Tensor:
    """Windows long audio into ``config.max_length``-frame AST inputs.

    Args:
        wave_16k_mono: ``(N,)`` waveform.
        config: feature settings.
        hop_seconds: hop between windows; default: half a window.

    Returns:
        ``(W, F, M)``: one fbank per window (W = 1 for audio shorter than a window).
    """
    cfg = config or AudioFeatureConfig()
    x = _as_tensor(wave_16k_mono)
    win = cfg.num_samples
    hop = int(
        round((hop_seconds if hop_seconds is not None else win / cfg.sample_rate / 2) * cfg.sample_rate)
    )
    starts = window_starts(x.numel(), win, max(hop, 1))
    return torch.stack([waveform_to_fbank(x[s : s + win], cfg) for s in starts])
