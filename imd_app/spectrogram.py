"""A streaming log-mel spectrogram for the live panel (numpy only, runs on the inference thread).

This is a display aid, not the model's input: the model's Kaldi fbank is computed by
``imd_core``. 25 ms Hann windows every 10 ms, ``mel_bins`` triangular filters up to
Nyquist, natural-log power.
"""

from __future__ import annotations

import numpy as np


def mel_filterbank(sample_rate: int, n_fft: int, mel_bins: int) -> np.ndarray:
    """Triangular mel filters.

    Returns:
        float32 (mel_bins, n_fft // 2 + 1).
    """

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges_hz = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(sample_rate / 2), mel_bins + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    fb = np.zeros((mel_bins, len(bins)), dtype=np.float32)
    for m in range(mel_bins):
        lo, mid, hi = edges_hz[m], edges_hz[m + 1], edges_hz[m + 2]
        up = (bins - lo) / max(mid - lo, 1e-6)
        down = (hi - bins) / max(hi - mid, 1e-6)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None)
    return fb


class LogMelStreamer:
    """Turns a stream of mono blocks into log-mel columns, carrying the remainder over."""

    def __init__(self, sample_rate: int = 16000, mel_bins: int = 64) -> None:
        self.sample_rate = sample_rate
        self.win = int(0.025 * sample_rate)
        self.hop = int(0.010 * sample_rate)
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.window = np.hanning(self.win).astype(np.float32)
        self.fb = mel_filterbank(sample_rate, self.n_fft, mel_bins)
        self._rest = np.zeros(0, np.float32)

    def reset(self) -> None:
        self._rest = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Adds samples; returns the new columns.

        Args:
            samples: float32 (N,) at ``sample_rate``.

        Returns:
            float32 (K, mel_bins), K = complete 10 ms hops now available.
        """
        buf = np.concatenate([self._rest, np.asarray(samples, np.float32).reshape(-1)])
        if len(buf) < self.win:
            self._rest = buf
            return np.zeros((0, self.fb.shape[0]), np.float32)
        count = 1 + (len(buf) - self.win) // self.hop
        idx = np.arange(self.win)[None, :] + self.hop * np.arange(count)[:, None]  # (K, win)
        frames = buf[idx] * self.window
        power = np.abs(np.fft.rfft(frames, n=self.n_fft, axis=1)) ** 2  # (K, n_fft/2+1)
        self._rest = buf[count * self.hop :]
        return np.log(power @ self.fb.T + 1e-6).astype(np.float32)


def resample_linear(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Cheap linear resampling for display (not for the model)."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    n_out = int(round(len(samples) * to_rate / from_rate))
    x_old = np.arange(len(samples)) / from_rate
    x_new = np.arange(n_out) / to_rate
    return np.interp(x_new, x_old, samples).astype(np.float32)
