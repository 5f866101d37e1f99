"""Decoding the next files on worker threads while the model runs on the current one.

Threads rather than processes: PyAV, swscale and the numpy/torch preprocessing release
the GIL, so threads overlap with the forward without copying frames between processes.
Files come back in input order; memory is bounded (``workers`` files in flight, ``depth``
items each); a producer's exception is re-raised when the consumer reaches that file.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Generic, TypeVar

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
