"""Intra-class cross-modality augmentation (IMD paper, by name; the details are ours).

With probability ``p`` a training clip's audio is replaced by the audio of another
training clip of the same class, chosen uniformly. The authors report it helps
datasets whose audio is often irrelevant and does not help audio-visual ones, so it is
off (``p = 0``) by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imd_core.errors import ConfigError


class CrossModalSwap:
    """Picks same-class audio donors.

    Args:
        labels: class index of every dataset item (item ``i`` has ``labels[i]``).
        p: probability of a swap per item, in [0, 1].
    """

    def __init__(self, labels: Sequence[int], p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"cross-modality swap probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.labels = np.asarray(labels, dtype=np.int64)
        self._by_class: dict[int, np.ndarray] = {
            int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)
        }

    def donor(self, index: int, rng: np.random.Generator, exclude: set[int] | None = None) -> int | None:
        """Another item of ``index``'s class to take audio from, or ``None`` (no swap).

        Args:
            index: the item being loaded.
            rng: the loader's random generator.
            exclude: items known to be unusable.
        """
        if self.p == 0.0 or rng.random() >= self.p:
            return None
        pool = self._by_class.get(int(self.labels[index]))
        if pool is None:
            return None
        candidates = pool[pool != index]
        if exclude:
            candidates = candidates[~np.isin(candidates, list(exclude))]
        if candidates.size == 0:
            return None
        return int(candidates[rng.integers(candidates.size)])
