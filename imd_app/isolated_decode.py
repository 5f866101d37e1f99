"""Decodes the app runs in a killable worker process, so that no file can freeze a thread.

A file that hangs inside FFmpeg (an ``ffconcat`` list naming a pipe nobody writes to, a
stalled network disk) blocks the calling thread for good: neither the in-process
watchdog nor FFmpeg's interrupt callback can end a call that never returns. The batch
tab's decodes and the player's open therefore run in one persistent spawned process per
worker thread (:class:`imd_core.media.isolate.BoundedProcess`, the mechanism of
``imd predict --decode-timeout``), which is killed and replaced when the caller has waited
past the deadline; the file then fails with ``DecodeError("decode timed out after N s
...")``.

Two halves live here:

* the worker side, run in the process and imported there by reference (so this module
  never imports Qt): :func:`batch_windows` (``imd predict``'s
  :func:`~imd_core.inference.prefetch.isolated_windows`, plus the duration the file
  claims, for progress), :func:`probe_media` (:func:`imd_core.media.probe.probe`) and
  :func:`playback_events` (the player's :class:`~imd_core.media.live.FilePlayback`);
* the caller side, :class:`IsolatedDecoder`: a ``BoundedProcess`` used by one worker
  thread that any thread can :meth:`~IsolatedDecoder.abort` (a user's cancel, a newer
  open, the app closing), so that nobody waits for the deadline to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

from imd_core.errors import ConfigError, ImdError

log = logging.getLogger(__name__)

DEFAULT_DECODE_TIMEOUT = 60.0  # seconds, as `imd predict --decode-timeout`
# Imported by a fresh worker before it reports ready: its start-up then never counts
# against a file (the same modules as imd predict's workers, plus this one).
PRELOAD = ("imd_app.isolated_decode", "imd_core.inference.file_windows", "imd_core.media.decode")

# Refunded per playback event on top of the time the worker took to produce it: the
# caller's wait also includes a pipe round trip (~0.05 ms). A little more than that, so
# that hours of playback never run the budget out; a stall is still caught within the
# timeout plus ~0.1 ms per event played (about 15 s an hour at 30 fps + 10 blocks/s).
_PIPE_ALLOWANCE = 1e-4

_ANY: Any = object()
_IDLE: Any = object()
PROBE, PLAYBACK = "probe", "playback"  # the player's stream keys (see DecodeWorker)


# ----------------------------------------------------------------------------- worker side
def _reraisable(path: str, exc: OSError, what: str) -> Exception:
    """An ``OSError`` raised in the worker as a ``DecodeError``.

    PyAV raises ``OSError`` subclasses (``av.error.PermissionError`` from a seek the
    demuxer refuses, ``FileNotFoundError``...), and the worker loop of ``BoundedProcess``
    takes an ``OSError`` for a broken pipe and exits (the caller would read "the
    decoding process crashed (exit code 0)").
    """
    from imd_core.errors import DecodeError

    return DecodeError(f"{path}: {what} ({type(exc).__name__}: {exc})")


def batch_windows(
    path: str, *, on_extend: Callable[[float], None], **kwargs: Any
) -> Generator[tuple[float | None, Any], None, float | None]:
    """A file's decoded windows, each with the duration the file claims (``None``: unknown).

    Runs in the worker. ``kwargs`` are those of
    :func:`~imd_core.inference.prefetch.isolated_windows`, which reports the claimed
    duration through ``on_extend`` (it lengthens the deadline) before its first window;
    it is passed on and kept for the caller's progress bar.

    Yields:
        ``(claimed duration in seconds or None, WindowInput)``.

    Returns:
        The clip's duration (as ``FileWindows.duration`` after iteration).
    """
    from imd_core.inference.prefetch import isolated_windows

    claimed: float | None = None

    def extend(seconds: float) -> None:
        nonlocal claimed
        claimed = float(seconds)
        on_extend(seconds)

    windows = isolated_windows(path, on_extend=extend, **kwargs)
    while True:
        try:
            item = next(windows)
        except StopIteration as stop:
            return stop.value
        except OSError as exc:
            raise _reraisable(path, exc, "cannot decode") from None
        yield claimed, item


def probe_media(path: str, *, on_extend: Callable[[float], None]) -> Generator[None, None, Any]:
    """:func:`imd_core.media.probe.probe` as a (yield-less) generator for the worker; returns ``MediaInfo``."""
    from imd_core.media.probe import probe

    try:
        return probe(path)
    except OSError as exc:
        raise _reraisable(path, exc, "cannot open") from None
    yield  # noqa: B901 - makes this a generator function, which BoundedProcess.stream runs


def playback_events(
    path: str,
    *,
    start: float,
    size: int | None,
    sample_rate: int,
    block_seconds: float,
    on_extend: Callable[[float], None],
) -> Generator[tuple[str, float, Any], None, None]:
    """The player's file events, decoded in the worker: ``("video", media time, rgb uint8 (H,W,3))``
    and ``("audio", media time, float32 mono (N,))``, in media-time order.

    :class:`~imd_core.media.live.FilePlayback` (one demux pass from ``start``, unpaced).
    Each event refunds the seconds it took to produce (``on_extend``), so the caller's
    deadline bounds the longest wait for one event (a stall, a hang mid-file), not the
    whole file's decoding.
    """
    from imd_core.media.live import FilePlayback, VideoFrame

    try:
        playback = FilePlayback(
            path, start=start, size=size, sample_rate=sample_rate, block_seconds=block_seconds, realtime=False
        )
    except OSError as exc:
        raise _reraisable(path, exc, "cannot open") from None
    events = iter(playback)
    try:
        while True:
            t0 = time.monotonic()
            try:
                item = next(events)
            except StopIteration:
                return
            except OSError as exc:  # e.g. a seek the demuxer refuses
                raise _reraisable(path, exc, "decoding stopped") from None
            on_extend(time.monotonic() - t0 + _PIPE_ALLOWANCE)
            if isinstance(item, VideoFrame):
                yield "video", float(item.media_time), item.frame
            else:
                yield "audio", float(item.media_time), item.samples
    finally:
        playback.stop()
        events.close()  # closes the container


def result_of(gen: Generator[Any, None, Any]) -> Any:
    """Runs a generator to its end (discarding items) and returns its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


# ----------------------------------------------------------------------------- caller side
class IsolatedDecoder:
    """One decoding worker process for one thread, under a deadline, abortable from any thread.

    :meth:`stream` runs a worker-side generator function (:func:`batch_windows`,
    :func:`probe_media`) through :meth:`BoundedProcess.stream
    <imd_core.media.isolate.BoundedProcess.stream>`: the deadline counts the seconds the
    caller waits (plus the duration the file claims); past it the process is killed and
    replaced and ``DecodeError("decode timed out after N s ...")`` is raised.
    :meth:`abort` ends a wait at once (the process is killed; the stream raises) and the
    next :meth:`stream` starts a fresh process. Call :meth:`start`, :meth:`stream` and
    :meth:`close` from the owning thread only.

    Args:
        timeout: seconds (> 0); read at each :meth:`stream`, so it may be changed between files.
        preload: modules a fresh worker imports before it reports ready.

    Raises:
        ConfigError: ``timeout`` is not positive.
    """

    def __init__(self, timeout: float, preload: Sequence[str] = PRELOAD) -> None:
        self.timeout = timeout
        self._preload = tuple(preload)
        self._lock = threading.Lock()
        self._proc: Any = None  # BoundedProcess, started on first use
        self._waiting: Any = _IDLE  # the key of the stream the caller is blocked on
        self._waiting_since = 0.0
        self._aborted = False

    @property
    def timeout(self) -> float:
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        if not float(seconds) > 0:
            raise ConfigError(f"the decode timeout must be > 0 seconds, got {seconds}; set a positive number")
        self._timeout = float(seconds)

    @property
    def waiting(self) -> bool:
        """Whether the owning thread is blocked on the worker right now."""
        with self._lock:
            return self._waiting is not _IDLE

    @property
    def waiting_key(self) -> Any:
        """The key of the stream the owning thread is blocked on, or ``None``."""
        with self._lock:
            return None if self._waiting is _IDLE else self._waiting

    def waited(self, key: Any = _ANY) -> float:
        """Seconds the owning thread has been blocked on the worker (for ``key``), 0 when it is not."""
        with self._lock:
            if self._waiting is _IDLE or (key is not _ANY and key != self._waiting):
                return 0.0
            return time.monotonic() - self._waiting_since

    def start(self) -> None:
        """Starts the worker process now, so that its start-up overlaps the caller's own work."""
        self._process()

    def _process(self) -> Any:
        from imd_core.media.isolate import BoundedProcess

        with self._lock:
            old, aborted = self._proc, self._aborted
            if aborted:  # a killed process may not have been replaced: never reuse it
                self._proc, self._aborted = None, False
        if aborted and old is not None:
            _dispose(old, aborted=True)
        with self._lock:
            if self._proc is None:
                self._proc = BoundedProcess(self._preload)
            return self._proc

    def stream(
        self,
        fn: Callable[..., Any],
        *args: Any,
        key: Any = None,
        cancelled: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> Generator[Any, None, Any]:
        """``fn(*args, on_extend=..., **kwargs)``'s items from the worker; returns its return value.

        Args:
            fn: a module-level generator function that imports in a fresh process.
            key: names this stream for :meth:`abort` (e.g. a batch row).
            cancelled: checked each time the caller starts to wait, after it is marked
                as waiting: work cancelled just before is not waited for (whoever cancels
                sets its flag, then calls :meth:`abort`, so one of the two sees the other).

        Raises:
            DecodeError: the deadline passed, the process died, or :meth:`abort` killed it.
            ImdError: ``cancelled()`` said so ("cancelled").
            Exception: whatever ``fn`` raised, re-raised here.
        """
        items = self._process().stream(fn, *args, timeout=self._timeout, **kwargs)
        try:
            while True:
                with self._lock:
                    self._waiting, self._waiting_since = key, time.monotonic()
                try:
                    if cancelled is not None and cancelled():
                        raise ImdError("cancelled")
                    item = next(items)
                except StopIteration as stop:
                    return stop.value
                finally:
                    with self._lock:
                        self._waiting = _IDLE
                yield item
        finally:
            items.close()  # left early: the worker drops the file (or is killed mid-call)

    def abort(self, key: Any = _ANY, *, min_wait: float = 0.0) -> bool:
        """Kills the worker if the owning thread is waiting on it (for ``key``, or any stream).

        Safe from any thread. Returns whether a wait was cut short. Mark the work as
        cancelled before calling it: the waiting thread wakes with an error at once.

        Args:
            key: only a stream started with this key (default: any).
            min_wait: only a wait that has lasted this long (seconds): a stuck call, not
                one of the short waits of a stream that is going well.
        """
        with self._lock:
            if self._waiting is _IDLE or (key is not _ANY and key != self._waiting):
                return False
            if time.monotonic() - self._waiting_since < min_wait:
                return False
            self._aborted = True
            if self._proc is not None:
                self._proc.abort()
            return True

    def close(self) -> None:
        """Stops the worker process (waits up to 5 s, then kills it)."""
        with self._lock:
            proc, aborted = self._proc, self._aborted
            self._proc, self._aborted = None, False
        if proc is not None:
            _dispose(proc, aborted)


def _dispose(proc: Any, aborted: bool) -> None:
    """Stops a ``BoundedProcess``; after an abort at once (its replacement may still be starting)."""
    if aborted:
        proc.abort()
    proc.close()
