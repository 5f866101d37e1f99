"""The batch job: a one-shot run in the thread pool that classifies queued files.

It loads the model once and feeds files from a thread-safe queue to
``Predictor.predict_paths`` until the queue is empty, so files dropped in meanwhile join
the run. Each file decodes in the controller's ``DecodeSandbox``, keyed by its path, so
that cancelling a file aborts its decode at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QRunnable, Signal

from imd_app.types import BatchRow, ModelSpec
from imd_core.errors import ImdError
from imd_core.media.sandbox import DecodeSandbox

if TYPE_CHECKING:
    from imd_core.inference.predictor import PathOutcome

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
        sandbox: where files decode (``None``: on the pool thread, where a file that hangs
            inside FFmpeg hangs the batch). The job starts it before loading the model and
            closes it when it returns.
    """

    def __init__(
        self,
        spec: ModelSpec,
        tasks: queue.Queue,
        cancelled: set[int],
        lock: threading.Lock,
        stop: threading.Event,
        window: float | None,
        sandbox: DecodeSandbox | None = None,
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
        self.sandbox = sandbox
        # row of each file predict_paths has taken and not yet reported (a path is queued once
        # at a time: BatchState.add_item)
        self._rows: dict[str, int] = {}

    def _is_cancelled(self, index: int) -> bool:
        with self.lock:
            return self.stop.is_set() or index in self.cancelled

    def run(self) -> None:
        try:
            if self.sandbox is not None:
                self.sandbox.start()  # its start-up overlaps the model's loading
            predictor = self._load()
            if predictor is None:
                return
            outcomes = predictor.predict_paths(
                self._files(),
                self.window,
                sandbox=self.sandbox,
                cancelled=lambda path: self._is_cancelled(self._rows[path]),
                progress=lambda path, done: self.signals.item_progress.emit(self._rows[path], done),
            )
            for outcome in outcomes:
                self._report(self._rows.pop(outcome.path), outcome)
        finally:
            if self.sandbox is not None:
                self.sandbox.close()
            self.signals.finished.emit()

    def _load(self):
        try:
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

    def _files(self) -> Iterator[str]:
        """The queued files, taken one at a time as ``predict_paths`` asks for the next."""
        while not self.stop.is_set():
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            if self._is_cancelled(task.index):
                self.signals.item_cancelled.emit(task.index)
                continue
            self._rows[task.path] = task.index
            self.signals.item_started.emit(task.index)
            yield task.path

    def _report(self, index: int, outcome: PathOutcome) -> None:
        if outcome.ok:
            rows = tuple(
                BatchRow(result=r, duration=float(outcome.duration or 0.0), warnings=outcome.warnings)
                for r in outcome.results
            )
            self.signals.item_done.emit(index, rows)
        elif self._is_cancelled(index):  # also a decode the controller aborted
            self.signals.item_cancelled.emit(index)
        else:
            if not outcome.bad_input:
                log.warning("batch: %s: %s", outcome.path, outcome.error)
            self.signals.item_failed.emit(index, outcome.error)
