"""Decoded-frame cache: decode each clip once, read its frames from disk afterwards.

Decoding is what limits the loader (~165 ms of CPU per 10 s 640x360 clip, see
docs/PERFORMANCE.md), and a training run decodes every clip once per epoch. With
``data.frame_cache`` set, :class:`FrameCacheDataset` decodes a clip the first time it
is needed into a uint8 array of every frame its sampler can pick, stores it (``.npy``,
read back memory-mapped) with the clip's fbank, and later epochs only read, resize,
crop and normalise.

What the sampler can pick is made finite first: in training, each of the ``T`` TSN
segments offers ``frame_grid`` evenly spaced candidate times instead of a continuous
random point (``dense`` sampling: ``frame_grid`` window positions), and the frames are
stored at the largest training scale; the random scale is then a resize (OpenCV area
filter) instead of a decode at that scale. These two quantisations are the only
difference from training without the cache. The same sampling without a cache folder
(``frame_cache=None``, ``frame_grid > 0``) decodes the picked frames directly and yields
exactly the tensors the cache yields (tested). Evaluation items are deterministic: their
frames are stored as decoded, so cached evaluation equals uncached evaluation exactly.

Entries are keyed by the file's content hash, the entry's window, the decode size, the
grid and the sampling and audio settings (like the AST cache), so renamed copies share
entries and changed settings never read stale frames. Writes are atomic (temporary
file, then rename; the ``.json`` is written last and marks a complete entry), so
DataLoader workers and DDP ranks can share one folder.

Disk: ``T * frame_grid`` frames of ``round(image_size * train_scale_max)`` short side
per training clip (8 x 4 frames of 258 x 459 = 11 MB for a 16:9 clip at 224 px) plus
the fbank (0.5 MB at 10.24 s); evaluation entries hold ``T`` (x test clips) frames at
``image_size``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imd_core.data.dataset import ClipDataset, content_hash
from imd_core.errors import ConfigError, ImdError

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: whole validation clips sampled as imd predict samples them


def grid_times(pre: Any, start: float, end: float, grid: int) -> np.ndarray:
    """Every training time the gridded sampler can pick, ``(T * grid,)`` seconds.

    ``uniform``: row ``i`` of the ``(T, grid)`` layout holds segment ``i``'s candidates
    ``start + (i + (j + 0.5) / grid) * seg``. ``dense``: row ``k`` of ``(grid, T)`` holds
    the ``T`` times of window position ``k``.
    """
    t = pre.num_frames
    if pre.sampling == "dense":
        length = end - start
        step = min(pre.dense_interval, length / t)
        span = step * t
        firsts = start + (np.arange(grid) + 0.5) / grid * (length - span)
        return (firsts[:, None] + (np.arange(t)[None, :] + 0.5) * step).reshape(-1)
    seg = (end - start) / t
    return (start + (np.arange(t)[:, None] + (np.arange(grid)[None, :] + 0.5) / grid) * seg).reshape(-1)


def grid_pick(pre: Any, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Random indices ``(T,)`` into :func:`grid_times`: one candidate per segment
    (``uniform``) or one window position (``dense``)."""
    t = pre.num_frames
    if pre.sampling == "dense":
        return int(rng.integers(grid)) * t + np.arange(t)
    return np.arange(t) * grid + rng.integers(0, grid, size=t)


class FrameCacheDataset(ClipDataset):
    """A :class:`ClipDataset` whose items come from the decoded-frame cache.

    Args:
        index, preprocessor, train, **kwargs: as :class:`ClipDataset`.
        cache_dir: the cache folder; ``None`` decodes every time (with the same gridded
            training sampling: the reference the cache must reproduce).
        frame_grid: training candidates per segment (``uniform``) or window positions
            (``dense``).

    Raises:
        ConfigError: ``clip_seconds`` in training (random windows cannot be cached).
    """

    def __init__(
        self,
        index: Any,
        preprocessor: Any,
        train: bool,
        *,
        cache_dir: Path | None,
        frame_grid: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(index, preprocessor, train, **kwargs)
        if train and self.clip_seconds is not None:
            raise ConfigError(
                "data.frame_cache caches whole clips (or manifest windows); set clip_seconds=0 "
                "or turn the frame cache off"
            )
        if frame_grid < 1:
            raise ConfigError(f"data.frame_grid must be >= 1, got {frame_grid}")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.frame_grid = frame_grid
        self.hits = 0
        self.misses = 0

    # ---- keys and storage
    def _entry_key(self, i: int, start: float, end: float | None) -> str:
        pre = self.pre
        spec = {
            "v": CACHE_VERSION,
            "file": content_hash(self.index.entries[i].path),
            "start": round(start, 6),
            "end": None if end is None else round(end, 6),
            "train": self.train,
            "size": pre.decode_size(self.train),
            "grid": self.frame_grid if self.train else 0,
            "frames": pre.num_frames,
            "sampling": pre.sampling,
            "dense_interval": pre.dense_interval,
            "views": pre.test_clips if self.multi_view else 1,
            "audio": [pre.sample_rate, pre.num_mel_bins, pre.audio_seconds],
        }
        return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=16).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        folder = self.cache_dir / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.fbank.npy", folder / f"{key}.json"

    @staticmethod
    def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)

    def _times(self, start: float, end: float, whole_clip: bool = False) -> np.ndarray:
        if self.train:
            return grid_times(self.pre, start, end, self.frame_grid)
        return self.pre.sample_times(
            start, end, train=False, multi_view=self.multi_view, whole_clip=whole_clip
        )

    def _decode(
        self, i: int, start: float, end: float | None, pick: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> tuple[np.ndarray, torch.Tensor, bool, str]:
        """Decodes item ``i``: frames at the entry's times (``pick`` selects some of
        them), its fbank, whether it has audio, and its audio ``cache_key``."""
        from imd_core.media.decode import decode_clip

        e = self.index.entries[i]
        whole = self._whole_clip(i)
        with self._decoding(e.path):
            clip = decode_clip(
                e.path,
                start,
                end,
                times=lambda s, t: (
                    self._times(s, t, whole) if pick is None else pick(self._times(s, t, whole))
                ),
                size=self.pre.decode_size(self.train),
                timeout=self.timeout,
            )
        audio = clip.audio if clip.has_audio else None
        key = f"{content_hash(e.path)}@{clip.start:.3f}-{clip.end:.3f}"
        return clip.frames, self.pre.fbank(audio), audio is not None, key

    def _entry(self, i: int) -> tuple[np.ndarray, torch.Tensor, bool, str]:
        """Item ``i``'s cached frames (memory-mapped), fbank, audio flag and key; decodes
        and stores them on a miss."""
        start, end = self._window(i)
        key = self._entry_key(i, start, end)
        frames_p, fbank_p, meta_p = self._paths(key)
        if meta_p.is_file():
            try:
                meta = json.loads(meta_p.read_text(encoding="utf-8"))
                frames = np.load(frames_p, mmap_mode="r")
                fbank = torch.from_numpy(np.load(fbank_p)) if meta["has_audio"] else self.pre.fbank(None)
                self.hits += 1
                return frames, fbank, bool(meta["has_audio"]), meta["cache_key"]
            except (OSError, ValueError, KeyError) as exc:  # a damaged entry is decoded again
                logger.warning("frame cache entry %s unreadable (%s); decoding again", meta_p, exc)
        self.misses += 1
        frames, fbank, has_audio, cache_key = self._decode(i, start, end)
        frames_p.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomic(frames_p, lambda fh: np.save(fh, np.ascontiguousarray(frames)))
        if has_audio:
            self._write_atomic(fbank_p, lambda fh: np.save(fh, fbank.numpy()))
        meta = {
            "path": self.index.entries[i].path,
            "cache_key": cache_key,
            "has_audio": has_audio,
            "shape": list(frames.shape),
            "version": CACHE_VERSION,
        }
        self._write_atomic(meta_p, lambda fh: fh.write(json.dumps(meta).encode()))
        return frames, fbank, has_audio, cache_key

    # ---- items
    def __getitem__(self, i: int) -> dict[str, Any]:
        """As :meth:`ClipDataset.__getitem__`, plus ``frame_cache_hits`` / ``frame_cache_misses``:
        the cache lookups this item made (replacements and swap donors included), so the
        engine can count them across DataLoader worker processes (``epoch`` events)."""
        hits, misses = self.hits, self.misses
        item = super().__getitem__(i)
        if self.cache_dir is not None:
            item.update(frame_cache_hits=self.hits - hits, frame_cache_misses=self.misses - misses)
        return item

    def load(self, i: int) -> dict[str, Any]:
        """Item ``i`` (same layout as :meth:`ClipDataset.load`)."""
        idx = grid_pick(self.pre, self.frame_grid, self.rng) if self.train else None
        if self.cache_dir is None:  # the reference: decode just the picked frames
            start, end = self._window(i)
            frames, fbank, has_audio, key = self._decode(
                i, start, end, pick=None if idx is None else (lambda times: times[idx])
            )
        else:
            frames, fbank, has_audio, key = self._entry(i)
            frames = np.ascontiguousarray(frames[idx] if idx is not None else frames)
        donor = self.swap.donor(i, self.rng, exclude=set(self.bad)) if self.train else None
        if donor is not None:
            try:
                fbank, has_audio, key = self._donor_audio(donor)
            except ImdError as exc:  # as in ClipDataset: a bad donor only cancels the swap
                self.bad[donor] = str(exc)
        # frames were decoded at the largest training scale: the random scale is a resize here
        item = self.pre(frames, None, self.train, self.rng, multi_view=self.multi_view, prescaled=False)
        item.update(
            fbank=fbank.clone(),
            audio_present=torch.tensor(has_audio),
            label=torch.tensor(self.index.entries[i].label_index, dtype=torch.long),
            index=i,
            cache_key=key,
        )
        return item

    def _donor_audio(self, j: int) -> tuple[torch.Tensor, bool, str]:
        if self.cache_dir is None:
            audio, key = self._audio_of(j)
            return self.pre.fbank(audio), audio is not None, key
        _, fbank, has_audio, key = self._entry(j)
        return fbank, has_audio, key
