"""The clip dataset and its loader: decode in worker processes, pinned memory.

An item is a dict::

    rgb            float32 (T, 3, S, S)   or (V, T, 3, S, S) in multi-view evaluation
    motion         float32 (T, 3, S, S)   or (V, T, 3, S, S)
    fbank          float32 (F, M)         AST input (of silence when there is no audio)
    audio_present  bool    ()             the clip has real audio in its window
    label          int64   ()
    index          int                    dataset position of the clip
    cache_key      str                    identifies the audio input (see below)

``cache_key`` = a content hash of the file whose audio the item carries + the decoded
window (``<hash>@<start>-<end>``), so the training engine can cache AST outputs across
epochs and renamed copies share entries. After a cross-modality swap it is the donor's.

``frame_cache_hits`` / ``frame_cache_misses`` (ints) are added by the decoded-frame cache
(:mod:`imd_core.train.frame_cache`) and summed per batch by :func:`collate_clips`.

With a :class:`DecodeLog`, every decode first records which file this process is
decoding (one small file per process), so a watchdog in the training process can name
a file that hangs mid-stream, in a DataLoader worker or in the main process.

Unusable files never crash an epoch: in training (``on_error="replace"``) a bad item
is replaced by the next usable one; in evaluation (``"skip"``) it is dropped from its
batch. Either way the batch lists it under ``skipped`` (indices) and
``skipped_reasons``, so the engine counts them across worker processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imd_core.data.augment import CrossModalSwap
from imd_core.data.manifest import DatasetIndex
from imd_core.data.transforms import ClipPreprocessor
from imd_core.errors import ConfigError, DataError, ImdError

logger = logging.getLogger(__name__)

_FULL_HASH_LIMIT = 64 << 20  # bytes; larger files hash head, middle and tail
_CHUNK = 4 << 20
_hash_cache: dict[tuple[str, int, int], str] = {}
_HOST = socket.gethostname().replace(os.sep, "_") or "host"


def content_hash(path: str) -> str:
    """A 128-bit BLAKE2b content hash (size + sampled chunks for files over 64 MiB)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _hash_cache:
        return _hash_cache[key]
    h = hashlib.blake2b(digest_size=16)
    h.update(str(st.st_size).encode())
    with open(path, "rb") as f:
        if st.st_size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            for offset in (0, st.st_size // 2 - _CHUNK // 2, st.st_size - _CHUNK):
                f.seek(offset)
                h.update(f.read(_CHUNK))
    _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


class DecodeLog:
    """Where each loading process records the file it is decoding right now.

    One JSON file per process, ``<folder>/<host>-<pid>.json`` = ``{"path", "since" (Unix
    seconds), "pid", "ppid", "host"}``, written (atomically) when a decode starts and removed
    when it ends, so a process stuck inside FFmpeg leaves its file behind. It costs two
    small file operations per decode (~0.1 ms, against ~100 ms for the decode). The
    training process reads it (:meth:`busy`) when a batch is late; picklable, so
    DataLoader workers share it.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._stack: list[str] = []  # nested decodes (a swap donor's audio inside an item)
        self._made_for = -1  # the pid that created the folder (workers are new processes)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"])

    def clear(self) -> None:
        """Removes every record (a new run or epoch: nothing is being decoded)."""
        if self.folder.is_dir():
            for f in self.folder.glob("*.json*"):
                with contextlib.suppress(OSError):
                    f.unlink()

    def _write(self, path: str | None) -> None:
        pid = os.getpid()
        target = self.folder / f"{_HOST}-{pid}.json"  # the host: DDP nodes may share the run folder
        if path is None:
            with contextlib.suppress(OSError):
                target.unlink()
            return
        if self._made_for != pid:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made_for = pid
        tmp = self.folder / f"{_HOST}-{pid}.json.tmp"
        record = {"path": path, "since": time.time(), "pid": pid, "ppid": os.getppid(), "host": _HOST}
        try:
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:  # never fail a clip because the record cannot be written
            logger.debug("decode log %s not written: %s", target, exc)

    @contextlib.contextmanager
    def decoding(self, path: str) -> Iterator[None]:
        """Marks ``path`` as being decoded by this process for the ``with`` block."""
        self._stack.append(path)
        self._write(path)
        try:
            yield
        finally:
            self._stack.pop()
            self._write(self._stack[-1] if self._stack else None)

    def busy(self, pids: set[int] | None = None) -> list[dict[str, Any]]:
        """The current records, oldest first; ``pids``: only records of these processes
        or of their children on this host (a training process passes its own pid)."""
        out = []
        if not self.folder.is_dir():
            return out
        for f in self.folder.glob("*.json"):
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
                since, path = float(rec["since"]), str(rec["path"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # removed meanwhile, or torn
            if pids is not None and (
                rec.get("host") != _HOST or (rec.get("pid") not in pids and rec.get("ppid") not in pids)
            ):
                continue
            out.append({**rec, "path": path, "since": since})
        return sorted(out, key=lambda r: r["since"])


class ClipDataset(Dataset):
    """Decoded, preprocessed clips of a :class:`DatasetIndex`.

    Args:
        index: the clips (usually one split).
        preprocessor: sampling, transforms and fbank settings.
        train: random sampling/augmentation (else deterministic).
        clip_seconds: longest window used per clip; longer ones get a random (train)
            or the central (eval) sub-window. ``None``: the whole entry window.
        cross_modal_p: probability of an intra-class audio swap (train only).
        multi_view: evaluation with ``test_clips x test_crops`` views per item.
        on_error: ``"replace"`` (default in training) or ``"skip"`` (default in eval).
        max_replacements: items tried before giving up on a batch slot.
        seed: seed of the main-process random generator (workers reseed per epoch).
        timeout: decode watchdog per file, seconds.
        decode_log: records which file each process is decoding (see :class:`DecodeLog`).
    """

    def __init__(
        self,
        index: DatasetIndex,
        preprocessor: ClipPreprocessor,
        train: bool,
        *,
        clip_seconds: float | None = None,
        cross_modal_p: float = 0.0,
        multi_view: bool = False,
        on_error: Literal["replace", "skip"] | None = None,
        max_replacements: int = 16,
        seed: int = 0,
        timeout: float = 30.0,
        decode_log: DecodeLog | None = None,
    ) -> None:
        if len(index) == 0:
            raise DataError(f"{index.root}: the dataset split is empty")
        if clip_seconds is not None and clip_seconds <= 0:
            raise ConfigError(f"clip_seconds must be positive, got {clip_seconds}")
        self.index = index
        self.pre = preprocessor
        self.train = train
        self.clip_seconds = clip_seconds
        self.multi_view = multi_view and not train
        self.on_error = on_error or ("replace" if train else "skip")
        if self.on_error not in ("replace", "skip"):
            raise ConfigError(f"on_error must be 'replace' or 'skip', got {self.on_error!r}")
        self.max_replacements = max_replacements
        self.timeout = timeout
        self.decode_log = decode_log
        self.swap = CrossModalSwap([e.label_index for e in index.entries], cross_modal_p if train else 0.0)
        self.rng = np.random.default_rng(seed)
        self.bad: dict[int, str] = {}  # this process's unusable items and why
        self._durations: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.index.entries)

    def reseed(self, seed: int) -> None:
        """New random stream (called in each worker from its per-epoch torch seed)."""
        self.rng = np.random.default_rng(seed)

    def _decoding(self, path: str) -> contextlib.AbstractContextManager[None]:
        """Records ``path`` in the decode log (if any) while the block decodes it."""
        return self.decode_log.decoding(path) if self.decode_log is not None else contextlib.nullcontext()

    # ---- windows
    def _whole_clip(self, i: int) -> bool:
        """Item ``i`` is a whole file (no manifest window, no ``clip_seconds`` crop): a test
        clip then gets the frames ``imd predict`` would take (``ClipPreprocessor.sample_times``)."""
        e = self.index.entries[i]
        return e.start is None and e.end is None and self.clip_seconds is None

    def _window(self, i: int) -> tuple[float, float | None]:
        e = self.index.entries[i]
        start, end = e.start or 0.0, e.end
        if self.clip_seconds is None:
            return start, end
        if end is None:
            if e.path not in self._durations:
                from imd_core.media.decode import probe

                with self._decoding(e.path):
                    self._durations[e.path] = probe(e.path, timeout=self.timeout).duration or 0.0
            end = self._durations[e.path]
        if end - start <= self.clip_seconds:
            return start, end
        slack = end - start - self.clip_seconds
        offset = self.rng.random() * slack if self.train else slack / 2
        return start + offset, start + offset + self.clip_seconds

    # ---- loading
    def _audio_of(self, i: int) -> tuple[np.ndarray | None, str]:
        """Audio (or None) and cache key of item ``i`` (used for swap donors)."""
        from imd_core.media.decode import decode_clip

        e = self.index.entries[i]
        start, end = self._window(i)
        with self._decoding(e.path):
            clip = decode_clip(e.path, start, end, video=False, timeout=self.timeout)
        return (
            clip.audio if clip.has_audio else None
        ), f"{content_hash(e.path)}@{clip.start:.3f}-{clip.end:.3f}"

    def load(self, i: int) -> dict[str, Any]:
        """Item ``i``; raises :class:`ImdError` when its file is unusable."""
        from imd_core.media.decode import decode_clip

        e = self.index.entries[i]
        start, end = self._window(i)
        # Training decodes straight at a random scale: swscale resizes once, no second resize.
        size = self.pre.train_decode_size(self.rng) if self.train else self.pre.decode_size(False)
        with self._decoding(e.path):
            clip = decode_clip(
                e.path,
                start,
                end,
                times=lambda s, t: self.pre.sample_times(
                    s,
                    t,
                    train=self.train,
                    rng=self.rng,
                    multi_view=self.multi_view,
                    whole_clip=self._whole_clip(i),
                ),
                size=size,
                timeout=self.timeout,
            )
        audio = clip.audio if clip.has_audio else None
        key = f"{content_hash(e.path)}@{clip.start:.3f}-{clip.end:.3f}"
        donor = self.swap.donor(i, self.rng, exclude=set(self.bad)) if self.train else None
        if donor is not None:
            try:
                audio, key = self._audio_of(donor)
            except ImdError as exc:  # a bad donor only cancels the swap
                self.bad[donor] = str(exc)
        item = self.pre(
            clip.frames, audio, self.train, self.rng, multi_view=self.multi_view, prescaled=self.train
        )
        item.update(label=torch.tensor(e.label_index, dtype=torch.long), index=i, cache_key=key)
        return item

    def __getitem__(self, i: int) -> dict[str, Any]:
        skipped: list[int] = []
        reasons: list[str] = []
        n = len(self)
        j = i
        for attempt in range(1, self.max_replacements + 2):
            if j not in self.bad:
                try:
                    item = self.load(j)
                    item.update(skipped=skipped, skipped_reasons=reasons)
                    return item
                except ImdError as exc:
                    self.bad[j] = str(exc)
                    logger.warning("skipping unusable clip %s", exc)
            skipped.append(j)
            reasons.append(self.bad[j])
            if self.on_error == "skip" or len(skipped) >= n:
                break
            j = (i + attempt) % n  # the next clips in order
        if self.on_error == "skip":
            return {"failed": True, "index": i, "skipped": skipped, "skipped_reasons": reasons}
        raise DataError(
            f"{self.index.root}: {len(skipped)} clips in a row could not be decoded "
            f"(last: {reasons[-1]}); run `imd data check` on the dataset"
        )


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks items into a batch; failed items are dropped and listed.

    Returns:
        ``rgb``, ``motion`` (B, ...), ``fbank`` (B, F, M), ``audio_present`` (B,) bool,
        ``label`` (B,), ``index`` (B,) int64, ``cache_key`` list[str], ``skipped``
        list[int], ``skipped_reasons`` list[str], ``batch_size`` int (B, may be 0);
        ``frame_cache_hits`` / ``frame_cache_misses`` (sums) when the items carry them.
    """
    good = [it for it in items if not it.get("failed")]
    batch: dict[str, Any] = {
        "skipped": [j for it in items for j in it["skipped"]],
        "skipped_reasons": [r for it in items for r in it["skipped_reasons"]],
        "batch_size": len(good),
    }
    for k in ("frame_cache_hits", "frame_cache_misses"):  # failed items count too (they decoded)
        if any(k in it for it in items):
            batch[k] = sum(int(it.get(k, 0)) for it in items)
    if good:
        for k in ("rgb", "motion", "fbank", "audio_present", "label"):
            batch[k] = torch.stack([it[k] for it in good])
        batch["index"] = torch.tensor([it["index"] for it in good], dtype=torch.long)
        batch["cache_key"] = [it["cache_key"] for it in good]
    return batch


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, ClipDataset):
        info.dataset.reseed(info.seed % (2**63))  # distinct per worker, derived from the loader seed


def make_loader(
    dataset: ClipDataset,
    batch_size: int,
    *,
    shuffle: bool | None = None,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    drop_last: bool | None = None,
    sampler: torch.utils.data.Sampler | None = None,
    seed: int = 0,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A DataLoader that decodes in worker processes and pins memory for the GPU.

    Args:
        dataset: the clips.
        batch_size: items per batch (fewer when eval items are skipped).
        shuffle: default: ``dataset.train`` (ignored with a ``sampler``, e.g. DDP's).
        num_workers: decoding processes; default: all CPU cores but one (0 = in process).
        pin_memory: default: when CUDA is available.
        drop_last: default: ``dataset.train``.
        seed: shuffling seed.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    workers = max(0, (os.cpu_count() or 2) - 1) if num_workers is None else num_workers
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=(dataset.train if shuffle is None else shuffle) if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=dataset.train if drop_last is None else drop_last,
        worker_init_fn=_worker_init,
        generator=generator,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
    )
