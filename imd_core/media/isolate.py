"""Calls that a hang inside FFmpeg cannot outlive: worker processes killed at a deadline.

The in-process :class:`~imd_core.media.probe.Watchdog` is checked between packets and
FFmpeg's interrupt callback stops network-style reads, but neither can stop a call that
blocks inside one FFmpeg function: an ``open`` of a pipe that never gets a writer (an
``ffconcat`` list naming one is enough), a file system that stops answering, a decoder
stuck on pathological data. :func:`map_bounded` runs such calls in spawned worker
processes and kills (SIGKILL) a worker whose call overruns its deadline; the caller gets
a result for that item from ``on_failure`` and a fresh worker takes the next item. A
worker that dies (a decoder crash on a damaged file) fails only its item, too.

Used by ``imd data check`` (:func:`imd_core.data.check.check_index`). Starting a worker
costs one Python start plus the imports (~0.5 s), once per worker and once per killed
call, not per item; the deadline of an item starts when a ready worker receives it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from imd_core.errors import ImdError

logger = logging.getLogger(__name__)

R = TypeVar("R")

_START_TIMEOUT = 120.0  # seconds for a fresh worker to import its function (a loaded machine)
_KILL_GRACE = 2.0  # seconds past the deadline: the call's own watchdog reports first if it can


def _serve(conn: Connection) -> None:
    """A worker's loop: load the function, then run ``(args, kwargs)`` jobs until told to stop."""
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
            try:
                conn.send(("raise", exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                conn.send(("raise", ImdError(f"{type(exc).__name__}: {exc}")))


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
