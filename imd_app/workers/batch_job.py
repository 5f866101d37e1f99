"""The batch job: a one-shot run in the thread pool that classifies queued files.

One job loads the model once and takes files from a thread-safe queue until it is
empty, so files dropped in while it runs join the same run. Per file it reports
progress window by window and honours cancellation between windows.

Decoding happens in the job's own worker process (:class:`IsolatedDecoder`, the bounded
decode of ``imd predict --decode-timeout``): a file that hangs inside FFmpeg fails with
"decode timed out after N s ..." and the next file gets a fresh process. The model runs
here, on the pool thread. The controller may :meth:`IsolatedDecoder.abort` the decode
of a cancelled file (or of every file, on shutdown) so that nothing waits for the deadline.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Signal

from imd_app.isolated_decode import IsolatedDecoder, batch_windows
from imd_app.types import BatchRow, ModelSpec
from imd_core.errors import ImdError
from imd_core.media.verdict import damaged_warning

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchTask:
    index: int
    path: str


class BatchSignals(QObject):
    item_started = Signal(int)
    item_progress = Signal(int, float)
    item_done = Signal(int, object)  # tuple[BatchRow, ...]
    item_failed = Signal(int, str)
    item_cancelled = Signal(int)
    failed = Signal(str)  # the whole run failed (e.g. model cannot load)
    finished = Signal()


class BatchJob(QRunnable):
    """Runs until ``tasks`` is empty or ``stop`` is set.

    Args:
        spec: the model to load (in this job's thread).
        tasks: queue of :class:`BatchTask`.
        cancelled: indices to skip or abort (shared set; guarded by ``lock``).
        window: seconds per window (``None``: whole clip).
        decoder: the job's decoding worker process (``None``: decode on the pool thread,
            where a file that hangs inside FFmpeg hangs the batch). The job starts it
            before loading the model and closes it when it returns.
    """

    def __init__(
        self,
        spec: ModelSpec,
        tasks: queue.Queue,
        cancelled: set[int],
        lock: threading.Lock,
        stop: threading.Event,
        window: float | None,
        predictor_factory=None,
        decoder: IsolatedDecoder | None = None,
    ) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.signals = BatchSignals()
        self.spec = spec
        self.tasks = tasks
        self.cancelled = cancelled
        self.lock = lock
        self.stop = stop
        self.window = window
        self._predictor_factory = predictor_factory
        self.decoder = decoder

    def _is_cancelled(self, index: int) -> bool:
        with self.lock:
            return self.stop.is_set() or index in self.cancelled

    def run(self) -> None:
        try:
            if self.decoder is not None:
                self.decoder.start()  # its start-up overlaps the model's loading
            predictor = self._load()
            if predictor is None:
                return
            while not self.stop.is_set():
                try:
                    task = self.tasks.get_nowait()
                except queue.Empty:
                    break
                self._run_task(predictor, task)
        finally:
            if self.decoder is not None:
                self.decoder.close()
            self.signals.finished.emit()

    def _load(self):
        try:
            if self._predictor_factory is not None:
                return self._predictor_factory(self.spec)
            from imd_app.engine_session import inference_threads
            from imd_core.inference.predictor import Predictor

            return Predictor(
                self.spec.folder, device=self.spec.device, threads=inference_threads(), batch_size=4
            )
        except ImdError as exc:
            self.signals.failed.emit(f"cannot load the model for the batch: {exc}")
        except Exception as exc:  # an incompatible folder can fail anywhere in loading
            log.exception("batch model load failed")
            self.signals.failed.emit(f"cannot load the model for the batch ({type(exc).__name__}: {exc})")
        # Everything still queued fails with the model.
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return None
            self.signals.item_failed.emit(task.index, "model not loaded")

    def _run_task(self, predictor, task: BatchTask) -> None:
        if self._is_cancelled(task.index):
            self.signals.item_cancelled.emit(task.index)
            return
        self.signals.item_started.emit(task.index)
        windows = self._windows(predictor, task)
        results = []
        damaged = 0
        try:
            while True:
                try:
                    progress, item = next(windows)
                except StopIteration as stop:
                    duration = stop.value
                    break
                if self._is_cancelled(task.index):
                    self.signals.item_cancelled.emit(task.index)
                    return
                results += predictor.predict_windows([item])
                damaged += item.damaged_packets
                if progress is not None:
                    self.signals.item_progress.emit(task.index, progress)
        except ImdError as exc:  # also a decode the controller aborted: cancelled, then
            self._report_failure(task.index, str(exc))
            return
        except Exception as exc:  # one bad file must not end the run
            log.exception("batch: %s failed", task.path)
            self._report_failure(task.index, f"unexpected error ({type(exc).__name__}: {exc})")
            return
        finally:
            windows.close()  # a file left early: its decoding worker drops it
        warning = damaged_warning(damaged)  # the file was used anyway: a warning, as imd predict says
        notes = (warning,) if warning else ()
        rows = tuple(BatchRow(result=r, duration=float(duration or 0.0), warnings=notes) for r in results)
        self.signals.item_done.emit(task.index, rows)

    def _report_failure(self, index: int, message: str) -> None:
        if self._is_cancelled(index):
            self.signals.item_cancelled.emit(index)
        else:
            self.signals.item_failed.emit(index, message)

    def _windows(self, predictor, task: BatchTask) -> Generator[tuple[float | None, Any], None, float | None]:
        """``(progress 0..1 or None, WindowInput)`` per window, decoded in the worker process
        (or here without one); returns the clip's duration."""
        if self.decoder is None:
            fw = predictor.open(task.path, self.window, None)
            total = max(len(fw), 1)
            for i, item in enumerate(fw):
                yield (i + 1) / total, item
            return fw.duration
        stream = self.decoder.stream(
            batch_windows,
            task.path,
            key=task.index,
            cancelled=lambda: self._is_cancelled(task.index),
            **predictor.worker_decode_options(self.window, None),  # decoded as Predictor.open would
        )
        try:
            while True:
                try:
                    claimed, item = next(stream)
                except StopIteration as stop:
                    return stop.value
                yield (min(1.0, item.end / claimed) if claimed else None), item
        finally:
            stream.close()
