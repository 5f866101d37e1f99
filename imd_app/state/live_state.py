"""Live results of the streaming engine, kept in ring buffers for the plots."""

from __future__ import annotations

from collections import deque

import numpy as np
from PySide6.QtCore import QObject, Signal

from imd_app.types import InferenceStats
from imd_core.inference.results import WindowResult


class LiveState(QObject):
    """The newest window results and the recent spectrogram, on the GUI thread.

    The plots read the ring buffers on their own timer; the signals say that something
    changed so labels and text can update at once.
    """

    result_added = Signal(object)  # WindowResult
    cleared = Signal()
    labels_changed = Signal(object)  # tuple[str, ...]
    stats_changed = Signal(object)  # InferenceStats
    spectrogram_changed = Signal()

    def __init__(self, max_results: int = 2000, mel_bins: int = 64, spectrogram_columns: int = 600) -> None:
        super().__init__()
        self.results: deque[WindowResult] = deque(maxlen=max_results)
        self._labels: tuple[str, ...] = ()
        self._relevance_threshold = 0.0
        self._stats = InferenceStats(rate=0.0, latency=0.0, skipped=0)
        self.mel_bins = mel_bins
        # (columns, mels) ring; ``_spec_fill`` counts columns written since the last clear.
        self.spectrogram = np.full((spectrogram_columns, mel_bins), -10.0, dtype=np.float32)
        self._spec_fill = 0
        self.spectrogram_version = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def relevance_threshold(self) -> float:
        """The model's relevance threshold: what the panel compares a window's relevance with."""
        return self._relevance_threshold

    def set_model(self, labels: tuple[str, ...], relevance_threshold: float) -> None:
        """A model was loaded: its class labels (a change clears the results) and threshold."""
        self._relevance_threshold = float(relevance_threshold)
        if labels != self._labels:
            self._labels = tuple(labels)
            self.results.clear()
            self.labels_changed.emit(self._labels)

    @property
    def latest(self) -> WindowResult | None:
        return self.results[-1] if self.results else None

    def add_result(self, result: WindowResult) -> None:
        # Results of an earlier pass (before a seek back) would fold the timeline over itself.
        while self.results and self.results[-1].end > result.end:
            self.results.pop()
        self.results.append(result)
        self.result_added.emit(result)

    @property
    def stats(self) -> InferenceStats:
        return self._stats

    def set_stats(self, stats: InferenceStats) -> None:
        if stats != self._stats:
            self._stats = stats
            self.stats_changed.emit(stats)

    def append_spectrogram(self, columns: np.ndarray) -> None:
        """Append log-mel columns.

        Args:
            columns: float32 (K, mel_bins), oldest first.
        """
        if columns.size == 0:
            return
        k = min(len(columns), len(self.spectrogram))
        self.spectrogram = np.roll(self.spectrogram, -k, axis=0)
        self.spectrogram[-k:] = columns[-k:]
        self._spec_fill = min(self._spec_fill + k, len(self.spectrogram))
        self.spectrogram_version += 1
        self.spectrogram_changed.emit()

    def clear(self) -> None:
        self.results.clear()
        self.spectrogram[:] = -10.0
        self._spec_fill = 0
        self.spectrogram_version += 1
        self.set_stats(InferenceStats(rate=0.0, latency=0.0, skipped=0))
        self.cleared.emit()
