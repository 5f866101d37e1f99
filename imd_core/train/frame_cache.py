"""Decoded-frame cache: decode each clip once, read its frames from disk afterwards.

Training frames are quantised to ``frame_grid`` candidates per segment and stored at the
largest training scale (the random scale becomes a resize): the only difference from
training without the cache; evaluation is unchanged. Entries are keyed like the AST
cache and written atomically (``.json`` last), so workers and DDP ranks share a folder.
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
from imd_core.data.frame_times import GridTimes
from imd_core.errors import ConfigError, ImdError

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: whole validation clips sampled as imd predict samples them


def grid_pick(pre: Any, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Random indices ``(T,)`` into :func:`~imd_core.data.frame_times.grid_times`: one
    candidate per segment (``uniform``) or one window position (``dense``)."""
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

    def _decode_entry(
        self, i: int, start: float, end: float | None, pick: np.ndarray | None = None
    ) -> tuple[np.ndarray, torch.Tensor, bool, str]:
        """Decodes item ``i``: frames at the entry's times (``pick`` selects some of
        them), its fbank, whether it has audio, and its audio ``cache_key``."""
        times = GridTimes.of(self.pre, self.frame_grid, pick) if self.train else self._times(i)
        clip = self._decode_clip(i, start, end, times, size=self.pre.decode_size(self.train))
        audio = clip.audio if clip.has_audio else None
        key = f"{content_hash(self.index.entries[i].path)}@{clip.start:.3f}-{clip.end:.3f}"
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
        frames, fbank, has_audio, cache_key = self._decode_entry(i, start, end)
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
            frames, fbank, has_audio, key = self._decode_entry(i, start, end, pick=idx)
        else:
            frames, fbank, has_audio, key = self._entry(i)
            frames = np.ascontiguousarray(frames[idx] if idx is not None else frames)
        donor = self.swap.donor(i, self.rng, exclude=set(self.bad)) if self.train else None
        if donor is not None:
            try:
                fbank, has_audio, key = self._donor_audio(donor)
            except ImdError as exc:
                self._donor_failed(donor, exc)
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
