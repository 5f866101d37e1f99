"""The loader watchdog: a decode that hangs mid-stream ends the run, named and resumable.

The pre-training probe (:mod:`imd_core.train.probe`) keeps out files that hang at open;
a file that opens well and hangs later (an ``ffconcat`` list whose second entry is a
pipe, a disk that stalls after the header) still reaches a loader, where FFmpeg blocks
in C: no exception, no return. Two bounds cover it, both ``data.loader_timeout``
seconds of waiting for one batch:

- ``num_workers > 0``: the DataLoader's own ``timeout`` raises in the main thread;
  :meth:`LoaderWatchdog.watch` turns that into :class:`LoaderHang` (a
  :class:`~imd_core.errors.DecodeError`, exit code 3) naming the file.
- ``num_workers == 0``: the main thread itself is the one stuck in C, so a daemon
  thread of this class (fed by the loop's "waiting for a batch" marks) reports the hang
  and ends the process with :func:`os._exit` (flushing the events first). It also backs
  up the first case, ``grace`` seconds later, should the DataLoader not raise.

Which file hangs comes from the :class:`~imd_core.data.dataset.DecodeLog` every loading
process writes (one small record per process, so a worker stuck in C leaves it behind):
the oldest record of this process or of its DataLoader workers. What is done about it
(exclusion in the probe cache, the ``run_failed`` event) is up to the caller's callbacks.
Nothing is saved on this path, so nothing can be left half written; ``last/`` keeps the
previous checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from imd_core.errors import DecodeError
from imd_core.train.events import EventWriter

logger = logging.getLogger(__name__)

EXIT_HUNG = DecodeError.exit_code  # 3: bad input, as for every other unusable file


@dataclasses.dataclass(frozen=True)
class Hang:
    """What the watchdog found when a batch was late.

    Attributes:
        path: the file being decoded longest (``None``: no decode was in progress).
        seconds: how long that file has been decoding (else how long the loop waited).
        waited: how long the loop had been waiting for the batch.
    """

    path: str | None
    seconds: float
    waited: float


class LoaderHang(DecodeError):
    """A batch did not arrive within the loader timeout (:class:`Hang` in ``hang``)."""

    def __init__(self, message: str, hang: Hang) -> None:
        super().__init__(message)
        self.hang = hang


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_children(records: list[dict[str, Any]]) -> None:
    """Kills this process's loading children before it exits: an orphaned DataLoader
    worker stuck in C would live on holding stdout/stderr, and a parent reading them (the
    app, ``subprocess.run``) would wait for it forever."""
    import multiprocessing
    import signal

    pids = {int(r["pid"]) for r in records if int(r.get("pid", -1)) != os.getpid()}
    with contextlib.suppress(Exception):
        pids.update(p.pid for p in multiprocessing.active_children() if p.pid)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class LoaderWatchdog:
    """Bounds every wait for a batch of the loaders it :meth:`watch` es.

    Args:
        timeout: seconds one batch may take (``data.loader_timeout``).
        log: the decode log the datasets write (``None``: hangs are reported without a file).
        message: ``Hang -> one-line reason`` (what ``run_failed`` / the CLI shows).
        on_hang: called once with the hang before it is reported (e.g. record the file
            as excluded); in the main thread or the watchdog thread.
        on_fatal: called with the message from the watchdog thread just before the
            process exits (write ``run_failed``, flush).
        grace: extra seconds the thread allows a loader with workers (whose own timeout
            should fire first); default ``min(60, max(5, timeout / 5))``.
        exit_fn: how the thread ends the process (``os._exit``; tests pass their own).
        kill_children: before that, SIGKILL this process's DataLoader workers and other
            multiprocessing children (an orphaned stuck worker would hold the pipes).
        poll: seconds between the thread's checks (default ``min(1, timeout / 10)``).
    """

    def __init__(
        self,
        timeout: float,
        log: Any,
        *,
        message: Callable[[Hang], str],
        on_hang: Callable[[Hang], None] | None = None,
        on_fatal: Callable[[str], None] | None = None,
        grace: float | None = None,
        exit_fn: Callable[[int], Any] = os._exit,
        kill_children: bool = True,
        poll: float | None = None,
    ) -> None:
        self.timeout = float(timeout)
        self.log = log
        self.message = message
        self.on_hang = on_hang
        self.on_fatal = on_fatal
        self.grace = min(60.0, max(5.0, self.timeout / 5)) if grace is None else float(grace)
        self.exit_fn = exit_fn
        self.kill_children = kill_children
        self.poll = min(1.0, self.timeout / 10) if poll is None else float(poll)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wait_since: float | None = None
        self._limit = self.timeout
        self._reported = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> LoaderWatchdog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="imd-loader-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> LoaderWatchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- the loop
    def watch(self, loader: Iterable[Any], on_batch: Callable[[Any], None] | None = None) -> _Watched:
        """``loader`` with every wait for a batch bounded (iterate it like the loader)."""
        return _Watched(self, loader, on_batch)

    def _begin_wait(self, in_process: bool) -> None:
        # in the main process the thread is the only bound; with workers the DataLoader's
        # timeout fires first and the thread is the backstop
        self._limit = self.timeout if in_process else self.timeout + self.grace
        self._wait_since = time.monotonic()

    def _end_wait(self) -> float:
        since, self._wait_since = self._wait_since, None
        return 0.0 if since is None else time.monotonic() - since

    def find(self, waited: float) -> Hang:
        """The file this process (or one of its workers) has been decoding longest."""
        records = []
        if self.log is not None:
            with contextlib.suppress(OSError):
                records = [r for r in self.log.busy({os.getpid()}) if _alive(int(r.get("pid", -1)))]
        if not records:
            return Hang(None, waited, waited)
        oldest = records[0]
        return Hang(oldest["path"], max(0.0, time.time() - oldest["since"]), waited)

    def _take(self, since: float | None = None) -> bool:
        """True for the first caller only: a hang is reported once. ``since``: the wait
        the thread saw, which must still be going on (the batch may just have come)."""
        with self._lock:
            if self._reported or (since is not None and self._wait_since != since):
                return False
            self._reported = True
            return True

    def report(self, hang: Hang) -> str:
        """Runs ``on_hang`` and returns the message (called once per hang)."""
        if self.on_hang is not None:
            try:
                self.on_hang(hang)
            except Exception:  # noqa: BLE001 - the report must still go out
                logger.exception("recording the hung file failed")
        return self.message(hang)

    def hang_error(self, waited: float) -> LoaderHang:
        """The error the main thread raises when its DataLoader timed out."""
        hang = self.find(waited)
        message = self.report(hang) if self._take() else self.message(hang)
        return LoaderHang(message, hang)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            since = self._wait_since
            if since is None or self._reported:
                continue
            waited = time.monotonic() - since
            if waited < self._limit or not self._take(since):
                continue
            hang = self.find(waited)
            message = self.report(hang)
            logger.error("%s", message)
            if self.on_fatal is not None:
                try:
                    self.on_fatal(message)
                except Exception:  # noqa: BLE001 - exit regardless
                    logger.exception("reporting the hang failed")
            if self.kill_children:
                records: list[dict[str, Any]] = []
                if self.log is not None:
                    with contextlib.suppress(OSError):
                        records = self.log.busy({os.getpid()})
                _kill_children(records)
            _flush_std()
            # The main thread is stuck inside C (FFmpeg): nothing can unwind it. Nothing
            # is being saved at this point (the loop is waiting for data), so exiting
            # here leaves every checkpoint complete.
            self.exit_fn(EXIT_HUNG)
            return


def failure_writer(writer: EventWriter, run_dir: Path, *, loud: bool) -> EventWriter:
    """``writer``, or for a non-zero DDP rank that found a hung file itself (``loud``) a
    writer of its own: rank 0 is blocked in a collective and would never say why."""
    if writer.enabled or not loud:
        return writer
    return EventWriter(run_dir / "events.jsonl", None, run=str(run_dir))


def hang_message(hang: Hang, timeout: float) -> str:
    """The one-line ``run_failed`` reason of a loader hang."""
    if hang.path is None:
        return (
            f"no batch arrived for {hang.waited:.3g} s and no file was being decoded "
            f"(data.loader_timeout {timeout:g} s); continue with `imd train --resume`, or raise data.loader_timeout"
        )
    return (
        f"{hang.path}: decode hung for {hang.seconds:.3g} s mid-stream; it is excluded from now on; "
        "continue with `imd train --resume`"
    )


def _is_loader_timeout(exc: RuntimeError) -> bool:
    return str(exc).startswith("DataLoader timed out after")


class _Watched:
    """A loader whose every ``next`` is timed by a :class:`LoaderWatchdog`."""

    def __init__(
        self, dog: LoaderWatchdog, loader: Iterable[Any], on_batch: Callable[[Any], None] | None
    ) -> None:
        self.dog, self.loader, self.on_batch = dog, loader, on_batch

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        in_process = int(getattr(self.loader, "num_workers", 0) or 0) == 0
        it = iter(self.loader)
        while True:
            self.dog._begin_wait(in_process)
            try:
                batch = next(it)
            except StopIteration:
                self.dog._end_wait()
                return
            except RuntimeError as exc:
                waited = self.dog._end_wait()
                if not _is_loader_timeout(exc):
                    raise
                error = self.dog.hang_error(waited)
                shutdown = getattr(it, "_shutdown_workers", None)  # terminate the stuck worker now
                if shutdown is not None:
                    with contextlib.suppress(Exception):
                        shutdown()
                raise error from None
            except BaseException:
                self.dog._end_wait()
                raise
            self.dog._end_wait()
            if self.on_batch is not None:
                self.on_batch(batch)
            yield batch
