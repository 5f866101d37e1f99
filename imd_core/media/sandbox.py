"""Decoding under a deadline: one persistent, abortable process per consumer.

A call that blocks inside FFmpeg (an ``ffconcat`` list naming a pipe nobody writes, a
stalled disk, a decoder stuck on pathological data) cannot be interrupted in-process.
A :class:`DecodeSandbox` runs decode jobs (a probe, a file's windows, a training clip,
a scan) in a spawned process and hands their items over in lockstep, so nothing
decodes ahead unseen and the deadline counts only the seconds the caller waits. Past
the deadline, on a crash, or on :meth:`~DecodeSandbox.abort` from any thread, the
process is killed (SIGKILL), the job fails with a one-line ``DecodeError``, and a
fresh process starts in the background. :func:`run_bounded` maps a job over many
files on a few sandboxes (``imd data check``, the training probe).

This is the only place that guards against a hanging decode; everything from files to
results goes through it (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import stat
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

from imd_core.errors import ConfigError, DecodeError, ImdError

logger = logging.getLogger(__name__)

R = TypeVar("R")

DEFAULT_DECODE_TIMEOUT = 60.0  # seconds on top of a file's own duration (imd predict, the app)
START_TIMEOUT = 120.0  # seconds for a fresh process to import its modules (a loaded machine)
KILL_GRACE = 2.0  # seconds past the deadline before the kill
# Imported by a fresh process before it reports ready, so its start-up never counts against
# a file: the decoders every job uses (no torch).
PRELOAD = ("imd_core.media.decode", "imd_core.inference.file_windows")

_ANY: Any = object()
_IDLE: Any = object()
_NEXT, _STOP = "next", "stop"


# ----------------------------------------------------------------------------- inside the process
_extend: Callable[[float], None] | None = None


def extend_deadline(seconds: float) -> None:
    """Gives the running job ``seconds`` more (e.g. the duration a file claims); a no-op
    outside a sandbox. Callers cap what a file may claim (``credible_seconds``)."""
    if _extend is not None:
        _extend(float(seconds))


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
    if not stat.S_ISREG(st.st_mode) or not claimed > 0:
        return 0.0
    return max(0.0, min(claimed, st.st_size / MIN_BYTES_PER_SECOND))


def _send_exception(conn, exc: Exception) -> None:
    try:
        conn.send(("raise", exc))
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        conn.send(("raise", ImdError(f"{type(exc).__name__}: {exc}")))


def _serve(conn, preload: Sequence[str]) -> None:
    """The process's loop: run ``(fn, args, kwargs)`` jobs, a generator's items one per ``next``.

    Only the pipe's own errors end the loop: an ``OSError`` raised by a job (PyAV's
    errors are ``OSError`` subclasses) goes back to the caller like any other exception.
    """
    import importlib
    import inspect

    global _extend
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle (it kills us)
    for name in preload:
        importlib.import_module(name)
    _extend = lambda seconds: conn.send(("extend", seconds))  # noqa: E731
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        fn, args, kwargs = job
        try:
            out = fn(*args, **kwargs)
            if not inspect.isgenerator(out):
                conn.send(("done", out))
                continue
            while True:
                try:
                    item = next(out)
                except StopIteration as stop:
                    conn.send(("done", stop.value))
                    break
                conn.send(("item", item))
                if conn.recv() != _NEXT:  # the caller gave up on this job
                    out.close()
                    break
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # noqa: BLE001 - sent back and re-raised in the caller
            _send_exception(conn, exc)


# ----------------------------------------------------------------------------- the caller's side
class _Process:
    """One spawned sandbox process and its pipe."""

    def __init__(self, preload: Sequence[str]) -> None:
        ctx = mp.get_context("spawn")  # no fork: the parent holds threads (torch, Qt)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, tuple(preload)), daemon=True, name="imd-sandbox")
        self.proc.start()
        child.close()
        self.started = time.monotonic()
        self.ready = False

    def wait_ready(self) -> None:
        if self.ready:
            return
        left = self.started + START_TIMEOUT - time.monotonic()
        try:
            ok = self.conn.poll(max(0.0, left)) and self.conn.recv()[0] == "ready"
        except (EOFError, OSError):
            ok = False
        if not ok:
            self.proc.join(1.0)
            code = self.proc.exitcode
            self.kill()
            what = f"exited at start (exit code {code})" if code is not None else "did not start in time"
            raise ImdError(
                f"a decoding process {what}; check that the installation imports in a fresh process "
                "(a script that starts one needs an `if __name__ == '__main__':` guard)"
            )
        self.ready = True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5.0)
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(5.0)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


class DecodeSandbox:
    """A persistent decode process for one consumer thread, under a deadline.

    :meth:`stream` runs a module-level function there (pickled by reference; it must
    import in a fresh process, ideally without torch): a generator function's items
    come back one per ``next``, a plain function's return value as the generator's.
    The deadline counts the seconds the caller waits, plus what the job adds with
    :func:`extend_deadline`. :meth:`abort` ends a wait at once from any other thread.
    Call everything else from the owning thread.

    Args:
        timeout: seconds (> 0); read at each :meth:`stream`, so it may change between files.
        preload: modules a fresh process imports before it reports ready.

    Raises:
        ConfigError: ``timeout`` is not positive.
    """

    def __init__(self, timeout: float, preload: Sequence[str] = PRELOAD) -> None:
        self.timeout = timeout
        self._preload = tuple(preload)
        self._lock = threading.Lock()
        self._proc: _Process | None = None
        self._waiting: Any = _IDLE  # the key of the job the owner is blocked on
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

    def start(self) -> DecodeSandbox:
        """Starts the process now, so that its start-up overlaps the caller's own work."""
        self._process()
        return self

    def _process(self) -> _Process:
        with self._lock:
            if self._aborted and self._proc is not None:  # killed from outside: never reuse it
                self._proc.kill()
                self._proc = None
            self._aborted = False
            if self._proc is not None and not self._proc.proc.is_alive():  # died while idle
                self._proc.kill()
                self._proc = None
            if self._proc is None:
                self._proc = _Process(self._preload)
            return self._proc

    def _replace(self, proc: _Process) -> None:
        """Kills ``proc`` and starts its successor in the background (its start-up is free)."""
        proc.kill()
        with self._lock:
            self._aborted = False
            self._proc = _Process(self._preload)

    # ------------------------------------------------------------------ waiting, visible to other threads
    @property
    def waiting_key(self) -> Any:
        """The key of the job the owner is blocked on now, or ``None``."""
        with self._lock:
            return None if self._waiting is _IDLE else self._waiting

    def waited(self, key: Any = _ANY) -> float:
        """Seconds the owner has been blocked (on ``key``'s job); 0 when it is not."""
        with self._lock:
            if self._waiting is _IDLE or (key is not _ANY and key != self._waiting):
                return 0.0
            return time.monotonic() - self._waiting_since

    def abort(self, key: Any = _ANY) -> bool:
        """Kills the process if the owner is blocked on it (on ``key``'s job). Safe from any
        thread; mark the work cancelled first. Returns whether a wait was cut short (the
        owner then gets ``DecodeError("decode aborted")``)."""
        with self._lock:
            if self._waiting is _IDLE or (key is not _ANY and key != self._waiting):
                return False
            if self._proc is None:
                return False
            self._aborted = True
            self._proc.proc.kill()
            return True

    # ------------------------------------------------------------------ running jobs
    def stream(
        self,
        fn: Callable[..., Any],
        *args: Any,
        key: Any = None,
        cancelled: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> Generator[Any, None, Any]:
        """``fn(*args, **kwargs)``'s items, produced in the sandbox; returns its return value.

        Args:
            key: names this job for :meth:`abort` (e.g. a batch row).
            cancelled: checked each time the owner starts to wait, after it is marked as
                waiting, so work cancelled just before is not waited for (whoever cancels
                sets its flag, then calls :meth:`abort`: one of the two sees the other).

        Raises:
            DecodeError: the deadline passed, the process died (a decoder crash), or
                :meth:`abort` killed it.
            ImdError: ``cancelled()`` said so ("cancelled").
            Exception: whatever ``fn`` raised, re-raised here.
        """
        proc = self._process()
        proc.wait_ready()
        allowed, waited = self._timeout, 0.0
        proc.conn.send((fn, args, kwargs))
        busy, finished = True, False  # busy: the process works for us, leaving means killing it
        try:
            while True:
                t0 = time.monotonic()
                with self._lock:
                    self._waiting, self._waiting_since = key, t0
                try:
                    if cancelled is not None and cancelled():
                        raise ImdError("cancelled")
                    kind, value = self._receive(proc, allowed + KILL_GRACE - waited, allowed)
                finally:
                    with self._lock:
                        self._waiting = _IDLE
                waited += time.monotonic() - t0
                if kind == "extend":
                    allowed += value
                elif kind == "item":
                    busy = False
                    yield value
                    proc.conn.send(_NEXT)
                    busy = True
                else:
                    busy, finished = False, True
                    if kind == "done":
                        return value
                    raise value
        finally:
            if busy:
                logger.debug("killing a decoding process (deadline, crash, abort or abandoned)")
                self._replace(proc)
            elif not finished:
                try:
                    proc.conn.send(_STOP)  # left early while holding an item: the job ends there
                except OSError:
                    self._replace(proc)

    def _receive(self, proc: _Process, left: float, allowed: float) -> tuple[str, Any]:
        if left <= 0 or not proc.conn.poll(left):
            raise DecodeError(
                f"decode timed out after {allowed:g} s (stopped; the file may be damaged, a pipe, or on a stalled disk)"
            )
        try:
            return proc.conn.recv()
        except (EOFError, OSError):
            proc.proc.join(5.0)
            with self._lock:
                aborted = self._aborted
            if aborted:
                raise DecodeError("decode aborted") from None
            raise DecodeError(
                f"the decoding process crashed (exit code {proc.proc.exitcode}); the file is probably damaged"
            ) from None

    def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Runs ``fn`` to its end in the sandbox and returns its return value (items are dropped)."""
        gen = self.stream(fn, *args, **kwargs)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    def close(self) -> None:
        """Stops the process (waits up to 5 s, then kills it)."""
        with self._lock:
            proc, aborted = self._proc, self._aborted
            self._proc, self._aborted = None, False
        if proc is not None:
            proc.kill() if aborted else proc.close()

    def __enter__(self) -> DecodeSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SandboxPool:
    """Sandboxes checked out by threads, one per job in flight (``Predictor`` prefetch threads)."""

    def __init__(self, size: int, timeout: float, preload: Sequence[str] = PRELOAD) -> None:
        self.timeout = float(timeout)
        self._preload = tuple(preload)
        self._free: queue.Queue[DecodeSandbox] = queue.Queue()
        self._all: list[DecodeSandbox] = []
        self._lock = threading.Lock()
        self.ensure(size)

    def ensure(self, size: int) -> None:
        """Starts sandboxes until there are ``size`` (every thread in flight must get one)."""
        with self._lock:
            while len(self._all) < max(1, size):
                box = DecodeSandbox(self.timeout, self._preload).start()
                self._all.append(box)
                self._free.put(box)

    def stream(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
        """``fn``'s items from a free sandbox (see :meth:`DecodeSandbox.stream`)."""
        box = self._free.get()
        try:
            return (yield from box.stream(fn, *args, **kwargs))
        finally:
            self._free.put(box)

    def close(self) -> None:
        """Stops every process (call when no job is in progress)."""
        with self._lock:
            for box in self._all:
                box.close()
            self._all.clear()


def run_bounded(
    fn: Callable[..., R],
    jobs: Sequence[tuple[tuple, dict]],
    *,
    timeout: float,
    on_failure: Callable[[int, str], R],
    workers: int = 1,
) -> Iterator[tuple[int, R]]:
    """Runs ``fn(*args, **kwargs)`` per job on ``workers`` sandboxes; yields ``(index, result)``
    as jobs finish. A job killed at its deadline or whose process crashed gets
    ``on_failure(index, one-line reason)``; any other exception ``fn`` raises is re-raised."""
    if not jobs:
        return
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(jobs)):
        todo.put(i)
    done: queue.Queue[tuple[int, Any, BaseException | None]] = queue.Queue()
    stop = threading.Event()
    boxes: list[DecodeSandbox] = []

    def work() -> None:
        with DecodeSandbox(timeout) as box:
            boxes.append(box)
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                args, kwargs = jobs[i]
                try:
                    done.put((i, box.call(fn, *args, cancelled=stop.is_set, **kwargs), None))
                except DecodeError as exc:
                    done.put((i, on_failure(i, str(exc)), None))
                except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                    done.put((i, None, exc))

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(max(1, workers), len(jobs)))]
    for t in threads:
        t.start()
    try:
        for _ in range(len(jobs)):
            i, result, error = done.get()
            if error is not None:
                raise error
            yield i, result
    finally:
        stop.set()  # the consumer left (done, an error, Ctrl+C): end the jobs in flight now
        for box in boxes:
            box.abort()
        for t in threads:
            t.join()
