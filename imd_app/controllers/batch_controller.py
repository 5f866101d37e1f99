"""Runs the batch queue in the thread pool and writes :class:`BatchState`; exports results.

Each run's decodes go to a :class:`~imd_core.media.sandbox.DecodeSandbox` bounded by
``decode_timeout``; cancelling the running file, cancelling all and :meth:`shutdown`
abort a decode in progress at once instead of waiting for its deadline.
"""

from __future__ import annotations

import csv
import json
import logging
import queue
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal

from imd_app.state import BatchState, ModelState
from imd_app.types import BatchRow
from imd_app.workers.batch_job import BatchJob, BatchTask
from imd_core.inference.inputs import expand_inputs
from imd_core.inference.results import csv_header
from imd_core.media.sandbox import DEFAULT_DECODE_TIMEOUT, DecodeSandbox

log = logging.getLogger(__name__)


def best_window(rows: list[BatchRow]) -> BatchRow | None:
    """The window whose top-1 score is highest."""
    return max(rows, key=lambda r: r.result.score, default=None)


def export_json(rows: list[BatchRow], path: str | Path) -> None:
    """One ``imd predict --json`` object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            obj = {**row.result.to_json_dict(), "warnings": list(row.warnings)}  # as imd predict --json
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")


def export_csv(rows: list[BatchRow], path: str | Path) -> None:
    """The ``imd predict --csv`` table: header plus one row per window."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(csv_header())
        for row in rows:
            writer.writerow(row.result.to_csv_row())


class _ExpandSignals(QObject):
    expanded = Signal(list, list)  # files (str), errors ((path, reason))


class ExpandJob(QRunnable):
    """One-shot: turns dropped files and folders into media files (a folder walk can be slow)."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self.paths = paths
        self.signals = _ExpandSignals()

    def run(self) -> None:
        files, errors = expand_inputs(self.paths)
        self.signals.expanded.emit([str(f) for f in files], [(e.path, e.reason) for e in errors])


class BatchController(QObject):
    message = Signal(str)  # errors and notices for the user

    def __init__(self, state: BatchState, model: ModelState, pool: QThreadPool | None = None) -> None:
        super().__init__()
        self.state = state
        self.model = model
        self.pool = pool or QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._expand_pool = QThreadPool(self)
        self._expand_pool.setMaxThreadCount(1)
        self._expanding = 0
        self.window: float | None = None  # seconds; None: the model's default window
        self._tasks: queue.Queue[BatchTask] = queue.Queue()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._job: BatchJob | None = None
        self._sandbox: DecodeSandbox | None = None  # where the running job decodes
        # seconds a file's decode may keep the run waiting (plus its duration); a file past
        # it fails as "decode timed out"; 0 decodes on the pool thread (unbounded). Read
        # when a run starts.
        self.decode_timeout = DEFAULT_DECODE_TIMEOUT

    def add_paths(self, paths: list[str]) -> None:
        """Queues files; folders are walked (recursively, for media files) in the pool, not here."""
        job = ExpandJob(list(paths))
        job.signals.expanded.connect(self._on_expand_job_expanded, Qt.ConnectionType.QueuedConnection)
        self._expanding += 1
        self._expand_pool.start(job)

    def _on_expand_job_expanded(self, files: list, errors: list) -> None:
        self._expanding -= 1
        for path, reason in errors:
            self.message.emit(f"{path}: {reason}")
        added = 0
        for f in files:
            index = self.state.add_item(f)
            if index is not None:
                self._tasks.put(BatchTask(index, f))
                added += 1
        if added:
            self._ensure_running()

    @property
    def sandbox(self) -> DecodeSandbox | None:
        """Where the running job decodes, each file as a job keyed by its path (``None``
        between runs, or with no ``decode_timeout``)."""
        return self._sandbox

    @property
    def busy(self) -> bool:
        """Walking folders or classifying."""
        return self._expanding > 0 or self.state.running

    def _window_seconds(self) -> float | None:
        if self.window is not None:
            return self.window if self.window > 0 else None
        info = self.model.info
        return float(info.audio_seconds) if info is not None and info.audio_seconds > 0 else None

    def _ensure_running(self) -> None:
        if self._job is not None:
            return
        spec = self.model.spec
        if spec is None:
            self.message.emit("no model loaded: load a model folder first (Model > Load model folder...)")
            return
        self._stop.clear()
        timeout = self.decode_timeout
        self._sandbox = DecodeSandbox(timeout) if timeout > 0 else None
        job = BatchJob(
            spec, self._tasks, self._cancelled, self._lock, self._stop, self._window_seconds(), self._sandbox
        )
        q = Qt.ConnectionType.QueuedConnection
        job.signals.item_started.connect(
            lambda i: self.state.update_item(i, status="running", progress=0.0), q
        )
        job.signals.item_progress.connect(lambda i, p: self.state.update_item(i, progress=p), q)
        job.signals.item_done.connect(self._on_job_item_done, q)
        job.signals.item_failed.connect(lambda i, m: self.state.update_item(i, status="failed", message=m), q)
        job.signals.item_cancelled.connect(lambda i: self.state.update_item(i, status="cancelled"), q)
        job.signals.failed.connect(self.message, q)
        job.signals.finished.connect(self._on_job_finished, q)
        self._job = job
        self.state.set_running(True)
        self.pool.start(job)

    def _on_job_item_done(self, index: int, rows: tuple[BatchRow, ...]) -> None:
        notes = rows[0].warnings if rows else ()
        message = f"{len(rows)} window(s)" + "".join(f"; warning: {n}" for n in notes)
        self.state.update_item(index, status="done", progress=1.0, message=message)
        self.state.add_rows(list(rows))

    def _on_job_finished(self) -> None:
        self._job = None
        self._sandbox = None
        self.state.set_running(False)
        if not self._tasks.empty() and not self._stop.is_set():
            self._ensure_running()

    def cancel_item(self, index: int) -> None:
        with self._lock:
            self._cancelled.add(index)
        if self.state.items[index].status == "queued":
            self.state.update_item(index, status="cancelled")
        if self._sandbox is not None:  # (also "queued": the job may have started it already)
            self._sandbox.abort(self.state.items[index].path)  # a decode of this file in progress ends now

    def cancel_all(self) -> None:
        with self._lock:
            for i, item in enumerate(self.state.items):
                if item.status in ("queued", "running"):
                    self._cancelled.add(i)
        for i, item in enumerate(self.state.items):
            if item.status == "queued":
                self.state.update_item(i, status="cancelled")
        if self._sandbox is not None:
            self._sandbox.abort()

    def clear(self) -> None:
        self.cancel_all()
        if self._job is None:
            self._drain()
            self.state.clear()
            with self._lock:
                self._cancelled.clear()

    def _drain(self) -> None:
        while True:
            try:
                self._tasks.get_nowait()
            except queue.Empty:
                return

    def rows_for(self, path: str) -> list[BatchRow]:
        return [r for r in self.state.rows if r.result.path == path]

    def export(self, path: str | Path) -> None:
        """Writes CSV or JSON lines, chosen by the file's extension."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            export_csv(self.state.rows, path)
        else:
            export_json(self.state.rows, path)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Stop the run and wait for the pool's job to return (it closes its sandbox)."""
        self._stop.set()
        if self._sandbox is not None:
            self._sandbox.abort()  # a decode that hangs ends now, not at its deadline
        self._drain()
        self._expand_pool.waitForDone(timeout_ms)
        self.pool.waitForDone(timeout_ms)
