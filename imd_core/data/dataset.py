"""The clip dataset and its loader: decode in worker processes, pinned memory.

Every decode runs in the loading process's ``DecodeSandbox`` under the dataset's
``timeout``. Unusable files never crash an epoch: a bad item is replaced (training) or
dropped (evaluation) and listed in the batch's ``skipped``; decodes the sandbox stopped
are also listed in ``stopped``, which the engine leaves out from then on.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imd_core.data import clip_jobs
from imd_core.data.augment import CrossModalSwap
from imd_core.data.frame_times import FrameTimes
from imd_core.data.manifest import DatasetIndex
from imd_core.data.transforms import ClipPreprocessor
from imd_core.errors import ConfigError, DataError, DecodeError, ImdError
from imd_core.media.sandbox import PRELOAD, DecodeSandbox

logger = logging.getLogger(__name__)

_FULL_HASH_LIMIT = 64 << 20  # bytes; larger files hash head, middle and tail
_CHUNK = 4 << 20
_hash_cache: dict[tuple[str, int, int], str] = {}


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


class StoppedDecode(DecodeError):
    """The sandbox stopped a file's decode: it hung past the timeout, or crashed the decoder."""


_sandbox: DecodeSandbox | None = None
_sandbox_pid = -1
# Imported by each sandbox before it reports ready, so that no clip's deadline pays for them
# (torch-free: a sandbox starts in ~0.4 s with ~50 MB; torch would add ~3 s and ~450 MB).
SANDBOX_PRELOAD = (*PRELOAD, "imd_core.data.clip_jobs")


def process_sandbox(timeout: float) -> DecodeSandbox:
    """This process's decode sandbox (``timeout`` seconds per job), started on first use.

    One per loading process: the main process, or each DataLoader worker (a new pid),
    shared by its datasets and never pickled with them.
    """
    global _sandbox, _sandbox_pid
    if _sandbox_pid != os.getpid():
        if torch.utils.data.get_worker_info() is not None:
            _let_the_worker_start_processes()
        _sandbox, _sandbox_pid = DecodeSandbox(timeout, SANDBOX_PRELOAD), os.getpid()
    _sandbox.timeout = timeout
    return _sandbox


def _let_the_worker_start_processes() -> None:
    """DataLoader workers are daemonic, and multiprocessing refuses daemonic processes
    children lest they be orphaned. A sandbox process ends when its pipe closes, and
    SIGTERM (how DataLoader ends a worker that does not stop in time) becomes SystemExit
    here, which unwinds a wait on the sandbox and kills it: an orphan stuck in FFmpeg
    would keep the stdout and stderr of whoever started ``imd`` open."""
    multiprocessing.current_process().daemon = False
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


class ClipDataset(Dataset):
    """Decoded, preprocessed clips of a :class:`DatasetIndex`.

    An item is a dict::

        rgb            float32 (T, 3, S, S)   or (V, T, 3, S, S) in multi-view evaluation
        motion         float32 (T, 3, S, S)   or (V, T, 3, S, S)
        fbank          float32 (F, M)         AST input (of silence when there is no audio)
        audio_present  bool    ()             the clip has real audio in its window
        label          int64   ()
        index          int                    dataset position of the clip
        cache_key      str                    identifies the audio input (see below)

    ``cache_key`` is a content hash of the file whose audio the item carries + the decoded
    window (``<hash>@<start>-<end>``), so the training engine can cache AST outputs across
    epochs and renamed copies share entries; after a cross-modality swap it is the donor's.
    The decoded-frame cache (:mod:`imd_core.train.frame_cache`) adds ``frame_cache_hits`` /
    ``frame_cache_misses`` (ints), summed per batch by :func:`collate_clips`.

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
        timeout: seconds one file's decode may keep the loader waiting; past them the
            sandbox stops it and the file is unusable (:class:`StoppedDecode`).
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
    ) -> None:
        if len(index) == 0:
            raise DataError(f"{index.root}: the dataset split is empty")
        if clip_seconds is not None and clip_seconds <= 0:
            raise ConfigError(f"clip_seconds must be positive, got {clip_seconds}")
        if not timeout > 0:
            raise ConfigError(f"the decode timeout must be > 0 seconds, got {timeout}")
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
        self.swap = CrossModalSwap([e.label_index for e in index.entries], cross_modal_p if train else 0.0)
        self.rng = np.random.default_rng(seed)
        self.bad: dict[int, str] = {}  # this process's unusable items and why
        self._stopped: list[tuple[int, str]] = []  # stopped decodes not yet reported by an item
        self._durations: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.index.entries)

    def reseed(self, seed: int) -> None:
        """New random stream (called in each worker from its per-epoch torch seed)."""
        self.rng = np.random.default_rng(seed)

    def _in_sandbox(self, job: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        """``job(path, ...)`` (a :mod:`~imd_core.data.clip_jobs` job) in this process's sandbox.

        Raises:
            StoppedDecode: the sandbox stopped it (the jobs return their files' own errors).
        """
        try:
            return process_sandbox(self.timeout).call(job, path, *args, **kwargs)
        except DecodeError as exc:
            raise StoppedDecode(f"{path}: {exc}") from None

    def _decode_clip(self, i: int, start: float, end: float | None, times: Any = None, **kwargs: Any) -> Any:
        """Item ``i``'s ``DecodedClip`` in ``[start, end)``; ``times(start, end, rng)`` draws from
        ``self.rng``, as if it ran here. Raises the file's :class:`ImdError`."""
        path = self.index.entries[i].path
        clip, self.rng = self._in_sandbox(clip_jobs.decode, path, start, end, times, self.rng, **kwargs)
        if isinstance(clip, ImdError):
            raise clip
        return clip

    # ---- windows
    def _whole_clip(self, i: int) -> bool:
        """Item ``i`` is a whole file (no manifest window, no ``clip_seconds`` crop): a test
        clip then gets the frames ``imd predict`` would take (``ClipPreprocessor.sample_times``)."""
        e = self.index.entries[i]
        return e.start is None and e.end is None and self.clip_seconds is None

    def _times(self, i: int) -> FrameTimes:
        return FrameTimes.of(
            self.pre, train=self.train, multi_view=self.multi_view, whole_clip=self._whole_clip(i)
        )

    def _window(self, i: int) -> tuple[float, float | None]:
        e = self.index.entries[i]
        start, end = e.start or 0.0, e.end
        if self.clip_seconds is None:
            return start, end
        if end is None:
            if e.path not in self._durations:
                seconds = self._in_sandbox(clip_jobs.duration, e.path)
                if isinstance(seconds, ImdError):
                    raise seconds
                self._durations[e.path] = seconds
            end = self._durations[e.path]
        if end - start <= self.clip_seconds:
            return start, end
        slack = end - start - self.clip_seconds
        offset = self.rng.random() * slack if self.train else slack / 2
        return start + offset, start + offset + self.clip_seconds

    # ---- loading
    def _audio_of(self, i: int) -> tuple[np.ndarray | None, str]:
        """Audio (or None) and cache key of item ``i`` (used for swap donors)."""
        start, end = self._window(i)
        clip = self._decode_clip(i, start, end, video=False)
        key = f"{content_hash(self.index.entries[i].path)}@{clip.start:.3f}-{clip.end:.3f}"
        return (clip.audio if clip.has_audio else None), key

    def _donor_failed(self, donor: int, exc: ImdError) -> None:
        """A bad donor only cancels the swap; one the sandbox stopped is reported all the same."""
        self.bad[donor] = str(exc)
        if isinstance(exc, StoppedDecode):
            self._stopped.append((donor, str(exc)))

    def load(self, i: int) -> dict[str, Any]:
        """Item ``i``; raises :class:`ImdError` when its file is unusable."""
        e = self.index.entries[i]
        start, end = self._window(i)
        # Training decodes straight at a random scale: swscale resizes once, no second resize.
        size = self.pre.train_decode_size(self.rng) if self.train else self.pre.decode_size(False)
        clip = self._decode_clip(i, start, end, self._times(i), size=size)
        audio = clip.audio if clip.has_audio else None
        key = f"{content_hash(e.path)}@{clip.start:.3f}-{clip.end:.3f}"
        donor = self.swap.donor(i, self.rng, exclude=set(self.bad)) if self.train else None
        if donor is not None:
            try:
                audio, key = self._audio_of(donor)
            except ImdError as exc:
                self._donor_failed(donor, exc)
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
        item: dict[str, Any] | None = None
        for attempt in range(1, self.max_replacements + 2):
            if j not in self.bad:
                try:
                    item = self.load(j)
                    break
                except ImdError as exc:
                    self.bad[j] = str(exc)
                    if isinstance(exc, StoppedDecode):
                        self._stopped.append((j, str(exc)))
                    logger.warning("skipping unusable clip %s", exc)
            skipped.append(j)
            reasons.append(self.bad[j])
            if self.on_error == "skip" or len(skipped) >= n:
                break
            j = (i + attempt) % n  # the next clips in order
        if item is None and self.on_error == "replace":
            raise DataError(
                f"{self.index.root}: {len(skipped)} clips in a row could not be decoded "
                f"(last: {reasons[-1]}); run `imd data check` on the dataset"
            )
        item = item if item is not None else {"failed": True, "index": i}
        stopped, self._stopped = self._stopped, []
        item.update(skipped=skipped, skipped_reasons=reasons, stopped=stopped)
        return item


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks items into a batch; failed items are dropped and listed.

    Returns:
        ``rgb``, ``motion`` (B, ...), ``fbank`` (B, F, M), ``audio_present`` (B,) bool,
        ``label`` (B,), ``index`` (B,) int64, ``cache_key`` list[str], ``skipped``
        list[int], ``skipped_reasons`` list[str], ``stopped`` list[(int, str)],
        ``batch_size`` int (B, may be 0);
        ``frame_cache_hits`` / ``frame_cache_misses`` (sums) when the items carry them.
    """
    good = [it for it in items if not it.get("failed")]
    batch: dict[str, Any] = {
        "skipped": [j for it in items for j in it["skipped"]],
        "skipped_reasons": [r for it in items for r in it["skipped_reasons"]],
        "stopped": [pair for it in items for pair in it["stopped"]],
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
