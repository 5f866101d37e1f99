"""Decoding the next files on worker threads while the model runs on the current one.

:func:`prefetch` runs a per-file producer (for the Predictor: open, decode, preprocess
each window) on up to ``workers`` threads, each file ahead of the one being consumed,
and hands the files back **in input order**. Threads rather than processes: PyAV
decodes and swscale converts with the GIL released, and the preprocessing is numpy /
torch work that releases it too, so threads overlap with the model's forward without
copying frames between processes.

Memory is bounded: at most ``workers`` files are in flight, each with at most ``depth``
produced items waiting (a producer blocks when its queue is full). A producer's
exception (a file that cannot be read) is re-raised when the consumer reaches that
file, exactly where the sequential path would raise it.

Bounded decodes (``imd predict --decode-timeout``, on by default there): a call that
hangs inside FFmpeg cannot be interrupted in-process, so :class:`DecoderPool` moves
each file's decode into a persistent worker process
(:class:`~imd_core.media.isolate.BoundedProcess`, one per file in flight) that is
killed at the file's deadline. :func:`isolated_windows` is what runs there (no torch
import for uniform test-time sampling): the decoded windows come back one at a time
and are preprocessed on the caller's thread, so results are the same as in-process.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import os
import queue
import stat
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

P = TypeVar("P")
T = TypeVar("T")

_ITEM, _END, _ERROR = 0, 1, 2
_POLL = 0.1  # seconds between checks of the stop flag while a queue is full


class FileStream(Generic[T]):
    """One file's produced items, in order; iterating re-raises the producer's exception.

    Attributes:
        path: the input as given.
        result: the producer's return value (``StopIteration.value``), set once exhausted.
    """

    def __init__(self, path: Any, items: Iterator[tuple[int, Any]], cancel: Callable[[], None]) -> None:
        self.path = path
        self.result: Any = None
        self._items = items
        self._cancel = cancel

    def __iter__(self) -> Iterator[T]:
        for kind, value in self._items:
            if kind == _ITEM:
                yield value
            elif kind == _END:
                self.result = value
                return
            else:
                raise value

    def cancel(self) -> None:
        """Stops the producer of this file (the consumer gave up on it)."""
        self._cancel()


def _inline(path: P, produce: Callable[[P], Generator[T, None, Any]]) -> FileStream[T]:
    def items() -> Iterator[tuple[int, Any]]:
        gen = produce(path)
        try:
            while True:
                yield _ITEM, next(gen)
        except StopIteration as stop:
            yield _END, stop.value
        except Exception as exc:  # noqa: BLE001 -- handed to the consumer, as the threaded path does
            yield _ERROR, exc

    return FileStream(path, items(), lambda: None)


class _Worker:
    """A file being produced on a pool thread into a bounded queue."""

    def __init__(self, path: Any, depth: int, stop_all: threading.Event) -> None:
        self.path = path
        self.queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self.cancelled = threading.Event()
        self.stop_all = stop_all

    def _put(self, entry: tuple[int, Any]) -> bool:
        while not (self.cancelled.is_set() or self.stop_all.is_set()):
            try:
                self.queue.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def run(self, produce: Callable[[Any], Generator[Any, None, Any]]) -> None:
        try:
            gen = produce(self.path)
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    self._put((_END, stop.value))
                    return
                if not self._put((_ITEM, item)):
                    gen.close()
                    return
        except Exception as exc:  # noqa: BLE001 -- re-raised on the consumer's thread
            self._put((_ERROR, exc))

    def items(self) -> Iterator[tuple[int, Any]]:
        while True:
            entry = self.queue.get()
            yield entry
            if entry[0] != _ITEM:
                return


def prefetch(
    paths: Iterable[P],
    produce: Callable[[P], Generator[T, None, Any]],
    *,
    workers: int = 2,
    depth: int = 8,
) -> Iterator[FileStream[T]]:
    """Yields a :class:`FileStream` per path, in order, produced ahead on worker threads.

    Args:
        paths: the inputs, in the order their streams are yielded.
        produce: ``path -> generator`` of items (its return value becomes ``result``);
            runs on a worker thread.
        workers: files produced at once (threads); 0 produces each file inline, on the
            consumer's thread, when it is reached (the sequential path).
        depth: items a file may have waiting before its producer blocks.

    Consume each stream fully (or call ``cancel``) before taking the next; closing the
    iterator stops every producer.
    """
    if workers <= 0:
        for path in paths:
            yield _inline(path, produce)
        return
    stop_all = threading.Event()
    todo = iter(paths)
    live: collections.deque[_Worker] = collections.deque()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imd-prefetch")

    def start_more() -> None:
        # one thread per file in flight, so the file at the head is always being produced
        while len(live) < workers:
            path = next(todo, _EXHAUSTED)
            if path is _EXHAUSTED:
                return
            w = _Worker(path, max(1, depth), stop_all)
            live.append(w)
            pool.submit(w.run, produce)

    try:
        start_more()
        while live:
            w = live[0]
            yield FileStream(w.path, w.items(), w.cancelled.set)
            live.popleft()
            w.cancelled.set()  # a stream the consumer left early stops producing
            start_more()
    finally:
        stop_all.set()
        pool.shutdown(wait=True, cancel_futures=True)


_EXHAUSTED: Any = object()


# ----------------------------------------------------------------------------- bounded decodes
_WORKER_IMPORTS = ("imd_core.inference.file_windows", "imd_core.media.decode")


class UniformTimes:
    """Picklable test-time uniform sampling: the same arithmetic as
    :func:`imd_core.data.transforms.uniform_times` with ``offset=0.5`` (segment centres),
    without importing torch in a decoding worker. ``(start, end) -> (num_frames,)`` seconds."""

    def __init__(self, num_frames: int) -> None:
        self.num_frames = int(num_frames)

    def __call__(self, start: float, end: float) -> np.ndarray:
        n = self.num_frames
        seg = (end - start) / n
        return start + (np.arange(n) + np.full(n, 0.5)) * seg


def isolated_windows(
    path: Any,
    *,
    window: float | None,
    hop: float | None,
    num_frames: int,
    frame_size: int,
    chunk_seconds: float,
    sample_times: Callable[[float, float], np.ndarray] | None,
    on_extend: Callable[[float], None],
) -> Generator[Any, None, float | None]:
    """A file's decoded windows (:class:`~imd_core.inference.inputs.WindowInput`), in a worker.

    Runs in a :class:`~imd_core.media.isolate.BoundedProcess`; the file's deadline grows
    by the duration it claims (a whole clip's decode reads all of its audio). Returns
    the clip's duration, like ``FileWindows`` after iteration.
    """
    from imd_core.inference.file_windows import open_file_windows
    from imd_core.media.decode import probe

    fw = open_file_windows(
        path,
        window=window,
        hop=hop,
        num_frames=num_frames,
        frame_size=frame_size,
        chunk_seconds=chunk_seconds,
        sample_times=sample_times,
    )
    claimed = fw.duration
    if claimed is None:  # whole clip: no probe was needed to plan it; ask for the deadline's sake
        try:
            claimed = probe(path).duration
        except Exception:  # noqa: BLE001 -- only the deadline needs it: the decode below
            claimed = None  # raises its own (same as in-process) reason
    if claimed is not None and math.isfinite(claimed) and claimed > 0:
        on_extend(credible_seconds(path, float(claimed)))
    yield from fw
    return fw.duration


# Fewer bytes per second of media than any real audio or video stream carries (8 kbit/s):
# a file cannot honestly claim to last longer than its size allows at this rate.
MIN_BYTES_PER_SECOND = 1000.0


def credible_seconds(path: str | os.PathLike[str], claimed: float) -> float:
    """The duration ``path`` claims, capped by what its size can hold (a file sets no deadline
    of its own: an ffconcat naming a pipe with ``duration 1000000`` held a 5 s bound for
    minutes). Not a regular file (a pipe, a device): no extension at all."""
    try:
        st = os.stat(path)
    except OSError:
        return 0.0
    if not stat.S_ISREG(st.st_mode):
        return 0.0
    return max(0.0, min(claimed, st.st_size / MIN_BYTES_PER_SECOND))


class DecoderPool:
    """Decoding worker processes, one per file in flight, checked out by producer threads.

    Args:
        size: processes started now (in the background; see :meth:`ensure`).
        timeout: seconds a file's decode may keep its caller waiting, plus the duration
            the file claims; past it the worker is killed and replaced and the file
            fails with ``DecodeError("decode timed out after N s ...")``.
    """

    def __init__(self, size: int, timeout: float, preload: Sequence[str] = _WORKER_IMPORTS) -> None:
        from imd_core.media.isolate import BoundedProcess

        self.timeout = float(timeout)
        self._new = lambda: BoundedProcess(preload)
        self._free: queue.Queue[Any] = queue.Queue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self.ensure(size)

    def ensure(self, size: int) -> None:
        """Starts processes until there are ``size`` (every prefetch thread must get one)."""
        with self._lock:
            while len(self._all) < max(1, size):
                proc = self._new()
                self._all.append(proc)
                self._free.put(proc)

    def stream(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
        """``fn``'s items from a free worker, under the pool's deadline (see ``BoundedProcess.stream``)."""
        proc = self._free.get()
        try:
            return (yield from proc.stream(fn, *args, timeout=self.timeout, **kwargs))
        finally:
            self._free.put(proc)

    def close(self) -> None:
        """Stops every worker (call when no stream is in progress)."""
        with self._lock:
            for proc in self._all:
                proc.close()
            self._all.clear()
