"""The Training tab: dataset, job form, queue and history, monitor.

It composes widgets and wires them to :class:`TrainingController` (the queue of
``imd train`` processes) and :class:`DatasetChecker`; the only decisions here are which
job the monitor shows and what a request turns into. ``use_model_requested(folder)``
carries the ``best/`` model folder of a finished job for the player.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imd_app.training.dataset_check import CheckSummary, DatasetChecker
from imd_app.training.dataset_panel import DatasetPanel
from imd_app.training.form import JobForm, default_run_dir
from imd_app.training.history import JobHistory
from imd_app.training.jobs import TrainingController
from imd_app.training.monitor import MonitorPanel
from imd_app.training.spec import JobSpec
from imd_core.errors import ImdError

logger = logging.getLogger(__name__)

COLUMNS = ("Job", "Status", "Epochs", "Best val acc", "Started")


class TrainingTab(QWidget):
    """Start, monitor, stop and resume fine-tuning jobs.

    Args:
        controller: the job queue; by default one over the persisted history (which also
            reattaches to jobs still running from an earlier session).
    """

    use_model_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None, controller: TrainingController | None = None) -> None:
        super().__init__(parent)
        self.controller = controller or TrainingController(JobHistory(), parent=self)
        self.checker = DatasetChecker(self)

        self.dataset = DatasetPanel()
        self.form = JobForm()
        self.add_button = QPushButton("Add job to queue")
        self.form_error = QLabel()
        self.form_error.setWordWrap(True)
        self.form_error.setStyleSheet("color: #c0392b")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.dataset)
        left_layout.addWidget(self.form)
        left_layout.addWidget(self.form_error)
        left_layout.addWidget(self.add_button)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(left)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(max(440, left.sizeHint().width() + 24))

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.remove_button = QPushButton("Remove from history")
        self.monitor = MonitorPanel()
        right = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.table)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.remove_button)
        top_layout.addLayout(row)
        right.addWidget(top)
        right.addWidget(self.monitor)
        right.setStretchFactor(1, 3)

        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(1, 2)
        split.setSizes([420, 900])
        right.setSizes([160, 640])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(split)

        self.dataset.check_requested.connect(self._on_dataset_check_requested)
        self.checker.check_started.connect(self.dataset.show_checking)
        self.checker.check_finished.connect(self._on_checker_check_finished)
        self.checker.check_failed.connect(self.dataset.show_failure)
        self.add_button.clicked.connect(self._on_add_button_clicked)
        self.form.changed.connect(self.form_error.clear)
        self.remove_button.clicked.connect(self._on_remove_button_clicked)
        self.table.itemSelectionChanged.connect(self._on_table_selection_changed)
        self.controller.job_added.connect(self._on_controller_job_added)
        self.controller.job_removed.connect(self._on_controller_job_removed)
        self.controller.job_status_changed.connect(self._on_controller_job_status_changed)
        self.monitor.stop_requested.connect(self.controller.stop)
        self.monitor.cancel_requested.connect(self.controller.cancel)
        self.monitor.resume_requested.connect(self._on_monitor_resume_requested)
        self.monitor.use_model_requested.connect(self.use_model_requested)

        for job_id in sorted(self.controller.jobs, key=lambda j: self.controller.jobs[j].record.created):
            self._on_controller_job_added(job_id)
        running = self.controller.running_job()
        if running is not None:
            self.select_job(running.id)
        elif self.table.rowCount():
            self.table.selectRow(self.table.rowCount() - 1)

    # ------------------------------------------------------------------ requests
    def submit(self, spec: JobSpec) -> str | None:
        """Queues ``spec`` (what "Add job" does with the form); returns the job id."""
        try:
            state = self.controller.submit(spec)
        except ImdError as exc:
            self.form_error.setText(f"Cannot start: {exc}")
            return None
        self.form_error.clear()
        self.form.run_dir.setText(default_run_dir())
        self.select_job(state.id)
        return state.id

    def current_spec(self) -> JobSpec:
        """The form and dataset panel as a :class:`JobSpec`."""
        excluded = self.dataset.excluded()
        base = JobSpec(
            data=self.dataset.path.text().strip(), skip_bad_files=bool(excluded), excluded=excluded
        )
        return self.form.spec(base)

    def select_job(self, job_id: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == job_id:
                self.table.selectRow(row)
                return

    def shutdown(self) -> None:
        """Call when the app closes: running jobs keep running and are found again next launch."""
        self.checker.cancel()
        self.controller.shutdown()

    # ------------------------------------------------------------------ slots
    def _on_dataset_check_requested(self, data: str) -> None:
        self.checker.start(data)

    def _on_checker_check_finished(self, summary: CheckSummary) -> None:
        self.dataset.show_summary(summary)

    def _on_add_button_clicked(self) -> None:
        try:
            spec = self.current_spec()
        except ImdError as exc:
            self.form_error.setText(f"Cannot start: {exc}")
            return
        self.submit(spec)

    def _on_monitor_resume_requested(self, job_id: str) -> None:
        try:
            self.controller.resume(job_id)
        except ImdError as exc:
            self.form_error.setText(str(exc))

    def _on_remove_button_clicked(self) -> None:
        job_id = self._selected_job_id()
        if job_id:
            self.controller.remove(job_id)

    def _on_table_selection_changed(self) -> None:
        job_id = self._selected_job_id()
        self.monitor.show_job(self.controller.jobs.get(job_id) if job_id else None)

    def _on_controller_job_added(self, job_id: str) -> None:
        state = self.controller.jobs[job_id]
        row = self.table.rowCount()
        self.table.insertRow(row)
        for col in range(len(COLUMNS)):
            self.table.setItem(row, col, QTableWidgetItem())
        self.table.item(row, 0).setData(Qt.ItemDataRole.UserRole, job_id)
        state.progress_changed.connect(lambda: self._update_row(job_id))
        self._update_row(job_id)

    def _on_controller_job_removed(self, job_id: str) -> None:
        row = self._row_of(job_id)
        if row is not None:
            self.table.removeRow(row)

    def _on_controller_job_status_changed(self, job_id: str, status: str) -> None:
        self._update_row(job_id)

    # ------------------------------------------------------------------ helpers
    def _selected_job_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole) if rows else None

    def _row_of(self, job_id: str) -> int | None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == job_id:
                return row
        return None

    def _update_row(self, job_id: str) -> None:
        row, state = self._row_of(job_id), self.controller.jobs.get(job_id)
        if row is None or state is None:
            return
        record, progress = state.record, state.progress
        total = progress.total_epochs or state.spec.epochs
        best = progress.best.get("val_acc", record.best.get("val_acc"))
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.started)) if record.started else ""
        values = (
            record.name,
            record.status,
            f"{len(progress.epochs)}/{total}",
            "--" if best is None else f"{best:.3f}",
            started,
        )
        for col, value in enumerate(values):
            self.table.item(row, col).setText(value)
        self.table.item(row, 0).setToolTip(record.run_dir)
        self.table.item(row, 1).setToolTip(record.failure)
