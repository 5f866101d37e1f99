"""The batch job: a one-shot run in the thread pool that classifies queued files.

One job loads the model once and takes files from a thread-safe queue until it is
empty, so files dropped in while it runs join the same run. Per file it reports
progress window by window and honours cancellation between windows.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from PySide6.QtCore import QObject, QRunnable, Signal

from imd_app.types import BatchRow, ModelSpec
from imd_core.errors import ImdError

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

    def _is_cancelled(self, index: int) -> bool:
        with self.lock:
            return self.stop.is_set() or index in self.cancelled

    def run(self) -> None:
        try:
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
            self.signals.finished.emit()

    def _load(self):
        try:
            if self._predictor_factory is not None:
                return self._predictor_factory(self.spec)
            from imd_app.engine_session import inference_threads
            from imd_core.inference.predictor import Predictor

            return Predictor(self.spec.folder, device=self.spec.device, threads=inference_threads(), batch_size=4)
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
        try:
            windows = predictor.open(task.path, self.window, None)
            total = max(len(windows), 1)
            results = []
            for i, item in enumerate(windows):
                if self._is_cancelled(task.index):
                    self.signals.item_cancelled.emit(task.index)
                    return
                results += predictor.predict_windows([item])
                self.signals.item_progress.emit(task.index, (i + 1) / total)
        except ImdError as exc:
            self.signals.item_failed.emit(task.index, str(exc))
            return
        except Exception as exc:  # one bad file must not end the run
            log.exception("batch: %s failed", task.path)
            self.signals.item_failed.emit(task.index, f"unexpected error ({type(exc).__name__}: {exc})")
            return
        rows = tuple(BatchRow(result=r, duration=float(windows.duration)) for r in results)
        self.signals.item_done.emit(task.index, rows)
