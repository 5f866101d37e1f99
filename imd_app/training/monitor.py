"""The monitor of one job: progress and ETA, live curves, metrics, log tail, actions.

Curves are created once and refreshed with ``setData`` by a timer (10 Hz, only when new
events arrived), never per event.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QPalette, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from imd_app.training.events import format_eta
from imd_app.training.history import ACTIVE, RESUMABLE
from imd_app.training.jobs import JobState

REFRESH_MS = 100  # at most 10 plot updates a second
MAX_POINTS = 2000  # step-loss points drawn; more are strided


# Mid-tone colours that read on a light and on a dark background alike.
CURVE_COLOURS = {
    "steps": "#8c8cc8",  # train loss per step: thin, behind the per-epoch points
    "train": "#1f77b4",
    "val": "#d62728",
    "relevance": "#2ca02c",
}
LEGEND = (
    ("steps", "\u2500\u2500", "train loss per step"),
    ("train", "\u2501\u25cf\u2501", "train"),
    ("val", "\u2501\u25cf\u2501", "val"),
    ("relevance", "\u254c\u254c", "relevance accuracy"),
)


def style_plot(plot: pg.PlotWidget, palette: QPalette, title: str) -> None:
    """Colours a plot from the app's palette: the background of a text field, its text
    for titles, axes and labels (light in a light app, dark in a dark one)."""
    text = palette.color(QPalette.ColorRole.Text)
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    item = plot.getPlotItem()
    item.setTitle(title, color=text.name(), size="10pt")
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(text))
        axis.setTextPen(pg.mkPen(text))
    item.setLabel("bottom", "epoch", color=text.name())
    item.showGrid(x=True, y=True, alpha=0.25)


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "--" if value is None else pattern.format(value)


class MonitorPanel(QWidget):
    """Shows one :class:`JobState`; its buttons emit requests carrying the job id."""

    stop_requested = Signal(str)
    cancel_requested = Signal(str)
    resume_requested = Signal(str)
    use_model_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state: JobState | None = None
        self._dirty = False
        layout = QVBoxLayout(self)
        self.title = QLabel("No job selected", self)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.title)
        row = QHBoxLayout()
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setFormat("%p%")
        row.addWidget(self.progress, 1)
        self.eta = QLabel("ETA --", self)
        row.addWidget(self.eta)
        layout.addLayout(row)

        grid = QGridLayout()
        self.labels: dict[str, QLabel] = {}
        for i, (key, text) in enumerate(
            (
                ("epoch", "Epoch"),
                ("val_acc", "Val accuracy"),
                ("relevance_acc", "Relevance accuracy"),
                ("audio_drop_rate", "Audio-drop rate"),
                ("clips_per_s", "Throughput"),
                ("best", "Best"),
            )
        ):
            grid.addWidget(QLabel(text + ":", self), i // 3, 2 * (i % 3))
            self.labels[key] = QLabel("--", self)
            grid.addWidget(self.labels[key], i // 3, 2 * (i % 3) + 1)
        layout.addLayout(grid)

        buttons = QHBoxLayout()
        self.stop_button = QPushButton("Stop (save)", self)
        self.cancel_button = QPushButton("Cancel (discard)", self)
        self.resume_button = QPushButton("Resume", self)
        self.use_button = QPushButton("Use this model", self)
        for button in (self.stop_button, self.cancel_button, self.resume_button, self.use_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.stop_button.clicked.connect(lambda: self._request(self.stop_requested))
        self.cancel_button.clicked.connect(self._on_cancel_button_clicked)
        self.resume_button.clicked.connect(lambda: self._request(self.resume_requested))
        self.use_button.clicked.connect(self._on_use_button_clicked)

        split = QSplitter(Qt.Orientation.Vertical, self)
        plots = QWidget(split)
        plots_column = QVBoxLayout(plots)
        plots_column.setContentsMargins(0, 0, 0, 0)
        plots_column.setSpacing(2)
        # One legend row above both plots (same colours in each): it never covers a curve.
        self.legend = QLabel(plots)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setAlignment(Qt.AlignmentFlag.AlignCenter)
        plots_column.addWidget(self.legend)
        plots_layout = QHBoxLayout()
        plots_column.addLayout(plots_layout, 1)
        self.loss_plot = pg.PlotWidget(plots)
        self.acc_plot = pg.PlotWidget(plots)
        for plot in (self.loss_plot, self.acc_plot):
            plot.getPlotItem().setClipToView(True)
            plot.getPlotItem().setDownsampling(auto=True, mode="peak")
            plots_layout.addWidget(plot)
        self.acc_plot.setYRange(0.0, 1.05)
        dots = {"symbol": "o", "symbolSize": 6, "symbolPen": None}
        self.curves = {
            "step_loss": self.loss_plot.plot(pen=pg.mkPen(CURVE_COLOURS["steps"], width=1)),
            "train_loss": self.loss_plot.plot(
                pen=pg.mkPen(CURVE_COLOURS["train"], width=2), symbolBrush=CURVE_COLOURS["train"], **dots
            ),
            "val_loss": self.loss_plot.plot(
                pen=pg.mkPen(CURVE_COLOURS["val"], width=2), symbolBrush=CURVE_COLOURS["val"], **dots
            ),
            "train_acc": self.acc_plot.plot(
                pen=pg.mkPen(CURVE_COLOURS["train"], width=2), symbolBrush=CURVE_COLOURS["train"], **dots
            ),
            "val_acc": self.acc_plot.plot(
                pen=pg.mkPen(CURVE_COLOURS["val"], width=2), symbolBrush=CURVE_COLOURS["val"], **dots
            ),
            "relevance_acc": self.acc_plot.plot(
                pen=pg.mkPen(CURVE_COLOURS["relevance"], width=2, style=Qt.PenStyle.DashLine)
            ),
        }
        self._apply_palette()
        bottom = QWidget(split)
        bottom_layout = QHBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        self.log = QPlainTextEdit(bottom)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        bottom_layout.addWidget(self.log, 2)
        self.confusion = QLabel(bottom)
        self.confusion.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.confusion.setMinimumWidth(160)
        bottom_layout.addWidget(self.confusion, 1)
        split.setSizes([300, 160])
        layout.addWidget(split, 1)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh)
        self._timer.start()
        self._update_buttons()

    def _apply_palette(self) -> None:
        palette = self.palette()
        style_plot(self.loss_plot, palette, "Loss")
        style_plot(self.acc_plot, palette, "Accuracy")
        self.legend.setText(
            "&nbsp;&nbsp;&nbsp;".join(
                f'<span style="color:{CURVE_COLOURS[key]}">{sample}</span>&nbsp;{name}'
                for key, sample, name in LEGEND
            )
        )

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.PaletteChange:  # the system switched light/dark mode
            self._apply_palette()
        super().changeEvent(event)

    # ------------------------------------------------------------------ showing a job
    def show_job(self, state: JobState | None) -> None:
        if self.state is not None:
            for signal, slot in self._connections(self.state):
                signal.disconnect(slot)
        self.state = state
        self.log.clear()
        self.confusion.clear()
        if state is not None:
            for signal, slot in self._connections(state):
                signal.connect(slot)
            self.log.setPlainText("\n".join(state.log))
        self._on_state_status_changed(state.status if state else "")
        self._dirty = True
        self._refresh()

    def _connections(self, state: JobState) -> list:
        return [
            (state.status_changed, self._on_state_status_changed),
            (state.progress_changed, self._on_state_progress_changed),
            (state.log_appended, self._on_state_log_appended),
        ]

    def _on_state_status_changed(self, status: str) -> None:
        state = self.state
        if state is None:
            self.title.setText("No job selected")
        else:
            text = f"{state.record.name} — {status}"
            if state.record.failure and status == "failed":
                text += f": {state.record.failure}"
            self.title.setText(text)
            self.title.setToolTip(state.record.run_dir)
            image = state.confusion_image() if status not in ACTIVE else None
            if image is not None:
                pixmap = QPixmap(str(image))
                self.confusion.setPixmap(
                    pixmap.scaled(
                        320,
                        320,
                        Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation,
                    )
                )
                self.confusion.setToolTip(str(image))
        self._update_buttons()
        self._dirty = True

    def _on_state_progress_changed(self) -> None:
        self._dirty = True

    def _on_state_log_appended(self, lines: list) -> None:
        for line in lines:
            self.log.appendPlainText(str(line))

    def _update_buttons(self) -> None:
        status = self.state.status if self.state else ""
        self.stop_button.setEnabled(status in ("running", "queued"))
        self.cancel_button.setEnabled(status in ("running", "stopping", "queued"))
        self.resume_button.setEnabled(status in RESUMABLE)
        self.use_button.setEnabled(
            self.state is not None and status not in ACTIVE and self.state.best_model_dir() is not None
        )

    def _request(self, signal: Signal) -> None:
        if self.state is not None:
            signal.emit(self.state.id)

    def _on_cancel_button_clicked(self) -> None:
        """Discarding deletes the run folder and its checkpoints: ask first, when there is one."""
        if self.state is None:
            return
        run_dir = Path(self.state.record.run_dir)
        trained = (
            self.state.status != "queued" or (run_dir / "last").exists()
        )  # a queued job has lost nothing yet
        if trained and run_dir.exists() and not self.confirm_discard(str(run_dir)):
            return
        self._request(self.cancel_requested)

    def confirm_discard(self, run_dir: str) -> bool:
        answer = QMessageBox.question(
            self,
            "Discard this run?",
            f"Stop the job and delete its run folder?\n{run_dir}\nEvery checkpoint in it is lost; "
            "Stop keeps them and lets you resume.",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Discard

    def _on_use_button_clicked(self) -> None:
        folder = self.state.best_model_dir() if self.state else None
        if folder is not None:
            self.use_model_requested.emit(str(folder))

    # ------------------------------------------------------------------ refreshing
    def _refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        state = self.state
        if state is None:
            for curve in self.curves.values():
                curve.setData([], [])
            self.progress.setValue(0)
            self.eta.setText("ETA --")
            return
        p = state.progress
        self.progress.setValue(int(round(p.fraction * 1000)))
        self.progress.setFormat(p.phase or "%p%")  # "features 12/48" while a pretrained run reads its clips
        self.eta.setText(f"ETA {format_eta(p.eta_s)}" if state.status in ACTIVE else "")
        last = p.epochs[-1] if p.epochs else None
        total = f"/{p.total_epochs}" if p.total_epochs else ""
        self.labels["epoch"].setText(f"{len(p.epochs)}{total}")
        self.labels["val_acc"].setText(_fmt(last.val_acc if last else None))
        self.labels["relevance_acc"].setText(_fmt(last.relevance_acc if last else None))
        self.labels["audio_drop_rate"].setText(_fmt(last.audio_drop_rate if last else None))
        self.labels["clips_per_s"].setText(_fmt(p.clips_per_s, "{:.1f} clips/s"))
        best = p.best or state.record.best
        if "val_acc" in best:
            where = f" (epoch {best['epoch'] + 1:g})" if "epoch" in best else ""
            self.labels["best"].setText(f"val acc {best['val_acc']:.3f}{where}")
        else:
            self.labels["best"].setText("--")
        if p.step_losses and p.steps_per_epoch:
            data = np.asarray(p.step_losses, dtype=float)
            stride = max(1, len(data) // MAX_POINTS)
            self.curves["step_loss"].setData(data[::stride, 0] / p.steps_per_epoch, data[::stride, 1])
        else:
            self.curves["step_loss"].setData([], [])
        # Epoch events count from 0; the curves put epoch e's metrics at x = e + 1.
        xs = np.array([e.epoch + 1 for e in p.epochs], dtype=float)
        for key in ("train_loss", "val_loss", "train_acc", "val_acc", "relevance_acc"):
            ys = np.array(
                [np.nan if getattr(e, key) is None else getattr(e, key) for e in p.epochs], dtype=float
            )
            keep = ~np.isnan(ys)
            self.curves[key].setData(xs[keep], ys[keep])
        self._update_buttons()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._timer.stop()
        super().closeEvent(event)
