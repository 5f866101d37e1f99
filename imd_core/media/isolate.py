"""Calls that a hang inside FFmpeg cannot outlive: worker processes killed at a deadline.

The in-process :class:`~imd_core.media.probe.Watchdog` is checked between packets and
FFmpeg's interrupt callback stops network-style reads, but neither can stop a call that
blocks inside one FFmpeg function: an ``open`` of a pipe that never gets a writer (an
``ffconcat`` list naming one is enough), a file system that stops answering, a decoder
stuck on pathological data. :func:`map_bounded` runs such calls in spawned worker
processes and kills (SIGKILL) a worker whose call overruns its deadline; the caller gets
a result for that item from ``on_failure`` and a fresh worker takes the next item. A
worker that dies (a decoder crash on a damaged file) fails only its item, too.

Used by ``imd data check`` (:func:`imd_core.data.check.check_index`) and the training
probe (:mod:`imd_core.train.probe`). Starting a worker costs one Python start plus the
imports (~0.5 s), once per worker and once per killed call, not per item; the deadline
of an item starts when a ready worker receives it.

:class:`BoundedProcess` is the streaming form for ``imd predict``: one persistent
worker that runs a generator (a file's decoded windows) and hands its items over one
at a time, killed and replaced when the caller has waited past the file's deadline.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from imd_core.errors import ImdError

logger = logging.getLogger(__name__)

R = TypeVar("R")

_START_TIMEOUT = 120.0  # seconds for a fresh worker to import its function (a loaded machine)
_KILL_GRACE = 2.0  # seconds past the deadline: the call's own watchdog reports first if it can


def _send_exception(conn: Connection, exc: Exception) -> None:
    try:
        conn.send(("raise", exc))
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        conn.send(("raise", ImdError(f"{type(exc).__name__}: {exc}")))


def _ignore_interrupt() -> None:
    """Ctrl+C reaches the whole process group: the parent decides (and kills workers).

    A worker dying of it first would fail its item as "crashed" (the training probe
    then excluded a good file) and print a traceback per worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _serve(conn: Connection) -> None:
    """A worker's loop: load the function, then run ``(args, kwargs)`` jobs until told to stop."""
    _ignore_interrupt()
    try:
        fn, extendable = conn.recv()  # unpickling imports the function's module here
    except (EOFError, OSError):
        return
    conn.send(("ready", None))

    def extend(seconds: float) -> None:
        conn.send(("extend", float(seconds)))

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        args, kwargs = job
        if extendable:
            kwargs = {**kwargs, "on_extend": extend}
        try:
            conn.send(("done", fn(*args, **kwargs)))
        except Exception as exc:  # noqa: BLE001 - sent back and re-raised in the parent
            _send_exception(conn, exc)


class _Worker:
    """One spawned process and its state: starting -> idle -> busy -> idle ..."""

    def __init__(self, ctx, fn: Callable[..., Any], extendable: bool) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="imd-bounded-decode")
        self.proc.start()
        child.close()
        self.conn.send((fn, extendable))
        self.ready = False
        self.started = time.monotonic()
        self.item: int | None = None
        self.deadline = 0.0

    def limit(self) -> float | None:
        """When this worker must have answered (start-up or its call), ``None`` when idle."""
        if not self.ready:
            return self.started + _START_TIMEOUT
        return self.deadline if self.item is not None else None

    def submit(self, item: int, job: tuple[tuple, dict], timeout: float) -> None:
        self.item = item
        self.deadline = time.monotonic() + timeout + _KILL_GRACE
        self.conn.send(job)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5.0)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(5.0)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def map_bounded(
    fn: Callable[..., R],
    jobs: Sequence[tuple[tuple, dict]],
    *,
    timeout: float,
    on_failure: Callable[[int, str], R],
    workers: int = 1,
    extendable: bool = False,
) -> Iterator[tuple[int, R]]:
    """Runs ``fn(*args, **kwargs)`` for every job in worker processes, each call bounded.

    Args:
        fn: a module-level function (it is pickled by reference).
        jobs: ``(args, kwargs)`` per item.
        timeout: seconds a call may take before its worker is killed (plus a 2 s grace
            so that the call's own watchdog can report first).
        on_failure: ``(item index, one-line reason) -> result`` for a call that was
            killed at its deadline ("decode timed out after N s ...") or whose process
            died (a decoder crash: "the decoding process crashed ...").
        workers: processes running at once.
        extendable: ``fn`` takes ``on_extend(seconds)``; calling it gives that call
            more time (a whole-file scan adds the duration the file claims).

    Yields:
        ``(item index, result)`` as calls finish (not in order).

    Raises:
        Exception: whatever ``fn`` raised (pickled back from the worker).
        ImdError: a worker process could not start.
    """
    if not jobs:
        return
    ctx = mp.get_context("spawn")  # no fork: the parent may hold threads (torch, Qt)
    pending = list(range(len(jobs)))[::-1]  # pop() takes the next item
    allowed = [float(timeout)] * len(jobs)
    pool = [_Worker(ctx, fn, extendable) for _ in range(min(max(1, workers), len(jobs)))]
    try:
        while pending or any(w.item is not None for w in pool):
            for w in pool:
                if w.ready and w.item is None and pending:
                    i = pending.pop()
                    w.submit(i, jobs[i], timeout)
            limits = [w.limit() for w in pool]
            now = time.monotonic()
            soonest = min((t for t in limits if t is not None), default=None)
            ready = wait([w.conn for w in pool], timeout=None if soonest is None else max(0.0, soonest - now))
            now = time.monotonic()
            survivors = []
            for w, limit in zip(pool, limits, strict=True):
                failed = None
                if w.conn in ready:
                    try:
                        kind, value = w.conn.recv()
                    except (EOFError, OSError):  # the process died
                        w.proc.join(5.0)
                        if w.item is None:
                            raise ImdError(
                                f"a decoding worker process exited at start (exit code {w.proc.exitcode}); "
                                "check that the installation imports in a fresh process"
                            ) from None
                        failed = (
                            f"the decoding process crashed (exit code {w.proc.exitcode}); "
                            "the file is probably damaged"
                        )
                    else:
                        if kind == "ready":
                            w.ready = True
                        elif kind == "extend":
                            w.deadline += value
                            allowed[w.item] += value
                        elif kind == "done":
                            i, w.item = w.item, None
                            yield i, value
                        else:  # "raise"
                            raise value
                elif limit is not None and now > limit:
                    if not w.ready:
                        raise ImdError(f"a decoding worker process did not start within {_START_TIMEOUT:g} s")
                    failed = (
                        f"decode timed out after {allowed[w.item]:g} s (stopped; the file may be "
                        "damaged, a pipe, or on a stalled disk)"
                    )
                if failed is None:
                    survivors.append(w)
                    continue
                i = w.item
                logger.warning("item %d: %s", i, failed)
                w.kill()
                w.item = None
                if pending:
                    survivors.append(_Worker(ctx, fn, extendable))
                yield i, on_failure(i, failed)
            pool = survivors
    finally:
        for w in pool:
            if w.item is not None:
                w.kill()
            else:
                w.stop()


# ----------------------------------------------------------------------------- one persistent worker
_STOP = "stop"
_NEXT = "next"


def _serve_streams(conn: Connection) -> None:
    """A :class:`BoundedProcess` worker: import ``preload``, then run generator jobs in lockstep.

    Each item goes back as it is produced and the worker waits for ``next`` (or ``stop``:
    the consumer gave up on the file) before producing the next one, so nothing decodes
    ahead unseen and every second the parent waits is a second this worker worked.
    """
    import importlib

    _ignore_interrupt()
    try:
        preload = conn.recv()
        for name in preload:
            importlib.import_module(name)
    except (EOFError, OSError):
        return
    conn.send(("ready", None))

    def extend(seconds: float) -> None:
        conn.send(("extend", float(seconds)))

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        # Only the pipe's own errors end the worker: an OSError raised by ``fn`` (PyAV's
        # errors are OSError subclasses) goes back to the parent like any other exception.
        fn, args, kwargs = job
        try:
            gen = fn(*args, on_extend=extend, **kwargs)
        except Exception as exc:  # noqa: BLE001 - sent back and re-raised in the parent
            gen, failure = None, exc
        while gen is not None:
            failure = None
            try:
                message = ("item", next(gen))
            except StopIteration as stop:
                message = ("done", stop.value)
            except Exception as exc:  # noqa: BLE001 - sent back and re-raised in the parent
                failure = exc
            if failure is not None:
                break
            try:
                conn.send(message)
                if message[0] == "done":
                    break
                if conn.recv() != _NEXT:
                    gen.close()
                    break
            except (EOFError, OSError):
                return
        if failure is not None:
            try:
                _send_exception(conn, failure)
            except (EOFError, OSError):
                return


class BoundedProcess:
    """One persistent spawned worker process that runs generator functions under a deadline.

    :meth:`stream` yields what ``fn`` yields there, one item at a time, and returns its
    return value. The deadline counts only the seconds the caller waits for the worker
    (the job, then each next item), so a slow consumer never times a file out; ``fn``
    may lengthen it with ``on_extend(seconds)`` (the duration a file claims). A worker
    past its deadline is killed (SIGKILL) and a fresh one starts at once, in the
    background; its start-up (one Python start plus ``preload`` imports) never counts
    against a file. Use one instance from one thread at a time.

    Args:
        preload: modules the worker imports before it reports ready (so that the start-up
            overlaps the caller's own, e.g. loading a model).
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self._preload = tuple(preload)
        self._ctx = mp.get_context("spawn")  # no fork: the parent holds threads (torch, Qt)
        self._proc: Any = None
        self._start()

    def _start(self) -> None:
        self.conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_serve_streams, args=(child,), daemon=True, name="imd-bounded-decode"
        )
        self._proc.start()
        child.close()
        self.conn.send(self._preload)
        self._ready = False
        self._started = time.monotonic()

    def _wait_ready(self) -> None:
        if self._ready:
            return
        left = self._started + _START_TIMEOUT - time.monotonic()
        try:
            ok = self.conn.poll(max(0.0, left)) and self.conn.recv()[0] == "ready"
        except (EOFError, OSError):
            ok = False
        if not ok:
            self._proc.join(1.0)
            code = self._proc.exitcode
            self._kill(restart=False)
            what = (
                f"exited at start (exit code {code})"
                if code is not None
                else f"did not start within {_START_TIMEOUT:g} s"
            )
            raise ImdError(
                f"a decoding worker process {what}; check that the installation imports in a fresh process "
                "(a script that starts one needs an `if __name__ == '__main__':` guard)"
            )
        self._ready = True

    def _kill(self, restart: bool) -> None:
        self._proc.kill()
        self._proc.join(5.0)
        self.conn.close()
        self._proc = None
        if restart:
            self._start()

    def stream(self, fn: Callable[..., Any], *args: Any, timeout: float, **kwargs: Any) -> Any:
        """Runs the generator function ``fn(*args, on_extend=..., **kwargs)`` in the worker.

        Args:
            fn: a module-level generator function (pickled by reference; its module
                must import in a fresh process, ideally without torch).
            timeout: seconds the caller may wait in all, before ``on_extend`` additions.

        Yields:
            ``fn``'s items, as the worker produces them.

        Returns:
            ``fn``'s return value.

        Raises:
            DecodeError: the call ran past its deadline ("decode timed out after N s ...";
                the worker was killed) or the worker died (a decoder crash).
            Exception: whatever ``fn`` raised, re-raised here.
        """
        from imd_core.errors import DecodeError

        if self._proc is None:
            self._start()
        elif not self._proc.is_alive():  # died while idle (an abort, a crash): start afresh
            self._kill(restart=True)
        self._wait_ready()
        allowed, waited = float(timeout), 0.0
        self.conn.send((fn, args, kwargs))
        waiting = True  # the worker is busy on our behalf: leaving now means killing it
        finished = False
        try:
            while True:
                t0 = time.monotonic()
                left = allowed + _KILL_GRACE - waited
                if left <= 0 or not self.conn.poll(left):
                    raise DecodeError(
                        f"decode timed out after {allowed:g} s (stopped; the file may be damaged, "
                        "a pipe, or on a stalled disk)"
                    )
                try:
                    kind, value = self.conn.recv()
                except (EOFError, OSError):
                    self._proc.join(5.0)
                    raise DecodeError(
                        f"the decoding process crashed (exit code {self._proc.exitcode}); "
                        "the file is probably damaged"
                    ) from None
                waited += time.monotonic() - t0
                if kind == "extend":
                    allowed += value
                elif kind == "item":
                    waiting = False
                    yield value
                    self.conn.send(_NEXT)
                    waiting = True
                else:
                    waiting, finished = False, True
                    if kind == "done":
                        return value
                    raise value
        finally:
            if waiting:
                logger.debug("killing a decoding worker (deadline passed, crashed or abandoned)")
                self._kill(restart=True)
            elif not finished:
                try:
                    self.conn.send(_STOP)  # the consumer stopped early: the worker drops the file
                except OSError:
                    self._kill(restart=True)

    def abort(self) -> None:
        """Kills the worker now (SIGKILL); the one method safe to call from another thread.

        For a caller that must stop waiting before the deadline (a user's cancel, an app
        closing): a :meth:`stream` waiting on the worker raises ``DecodeError`` ("the
        decoding process crashed ...") at once and starts a fresh worker, as at a
        deadline. A worker killed while idle is replaced at the next :meth:`stream`.
        """
        proc = self._proc
        if proc is not None:
            proc.kill()

    def close(self) -> None:
        """Stops the worker (waits up to 5 s, then kills it)."""
        if self._proc is None:
            return
        try:
            self.conn.send(None)
        except OSError:
            pass
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)
        self.conn.close()
        self._proc = None
