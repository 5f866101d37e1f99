"""The live IMD panel: top-5 bars, score timeline, tags, relevance, audio decision, spectrogram.

Text widgets update when a result arrives; the two plots are created once and refreshed
from the :class:`LiveState` ring buffers on a timer (at most 30 Hz), clipped to the view.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from imd_app.state import LiveState, PlayerState
from imd_app.types import InferenceStats
from imd_app.widgets.elided_label import ElidedLabel
from imd_core.inference.results import WindowResult

TIMELINE_SECONDS = 20.0
AUDIO_STYLES = {
    "NO AUDIO": "background:#666; color:white; border-radius:4px;",
    "AUDIO DROPPED": "background:#b03030; color:white; border-radius:4px;",
    "AUDIO USED": "background:#2e8b3e; color:white; border-radius:4px;",
}
PAGE_SECONDS = 4.0  # the view jumps ahead by about this much when the marker nears its right edge
TOP_K = 5


class LivePanel(QWidget):
    def __init__(
        self, live: LiveState, player: PlayerState, parent: QWidget | None = None, refresh_hz: float = 30.0
    ) -> None:
        super().__init__(parent)
        self._live = live
        self._player = player
        self._dirty = True
        self._position_dirty = True
        self._tick = 0
        self._view = (-0.5, TIMELINE_SECONDS - 0.5)
        self._legend_names = [""] * TOP_K
        self._spec_version = -1
        self.refresh_count = 0
        self.setMinimumWidth(360)
        pg.setConfigOptions(antialias=False, imageAxisOrder="row-major")
        bg = self.palette().color(QPalette.ColorRole.Base)
        fg = self.palette().color(QPalette.ColorRole.Text)

        # Top-5 bars.
        bars_box = QGroupBox("Top-5 actions")
        grid = QGridLayout(bars_box)
        self.bar_labels: list[QLabel] = []
        self.bars: list[QProgressBar] = []
        for i in range(TOP_K):
            name = ElidedLabel(
                "—", mode=Qt.TextElideMode.ElideRight, hint_chars=18
            )  # Kinetics names reach 40 characters
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setFormat("")
            bar.setTextVisible(True)
            bar.setMaximumHeight(16)
            grid.addWidget(name, i, 0)
            grid.addWidget(bar, i, 1)
            self.bar_labels.append(name)
            self.bars.append(bar)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 2)
        # the model's "I don't know": shown above the bars, which keep the ranking
        self.confidence_label = QLabel("")
        self.confidence_label.setWordWrap(True)
        self.confidence_label.setStyleSheet("color: #b35c00; font-weight: bold;")
        self.confidence_label.setVisible(False)
        grid.addWidget(self.confidence_label, TOP_K, 0, 1, 2)

        # Timeline.
        self.timeline = pg.PlotWidget(background=bg)
        self.timeline.setMinimumHeight(150)
        self.timeline.setMouseEnabled(x=False, y=False)
        self.timeline.hideButtons()
        self.timeline.setYRange(0, 1, padding=0.02)
        self.timeline.setLabel("bottom", "time (s)")
        self.timeline.getAxis("bottom").setTextPen(fg)
        self.timeline.getAxis("left").setTextPen(fg)
        # Top-left, where the paging view keeps the oldest (least looked-at) seconds, on a
        # translucent background so that a curve under it stays visible.
        legend_bg = pg.mkColor(bg)
        legend_bg.setAlpha(170)
        self.timeline.addLegend(
            offset=(5, 5),
            labelTextColor=fg,
            labelTextSize="7pt",
            brush=legend_bg,
            pen=pg.mkPen(self.palette().color(QPalette.ColorRole.Mid)),
        )
        # Symbols too: a clip shorter than two windows gives isolated points, which a line alone hides.
        self.curves = [
            self.timeline.plot(
                [],
                [],
                pen=pg.mkPen(pg.intColor(i, TOP_K), width=2),
                name=" ",
                symbol="o",
                symbolSize=4,
                symbolPen=None,
                symbolBrush=pg.intColor(i, TOP_K),
            )
            for i in range(TOP_K)
        ]
        self.relevance_curve = self.timeline.plot(
            [], [], pen=pg.mkPen((128, 128, 128), width=1, style=Qt.PenStyle.DashLine), name="relevance"
        )
        self.threshold_line = pg.InfiniteLine(
            pos=0.5, angle=0, pen=pg.mkPen((220, 80, 80), style=Qt.PenStyle.DotLine)
        )
        self.position_line = pg.InfiniteLine(pos=0.0, angle=90, pen=pg.mkPen((255, 200, 0), width=2))
        self.timeline.setXRange(*self._view, padding=0)
        self.timeline.addItem(self.threshold_line)
        self.timeline.addItem(self.position_line)

        # Audio decision, relevance, tags.
        self.audio_label = QLabel("AUDIO —")
        self.audio_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.audio_label.setFrameShape(QFrame.Shape.StyledPanel)
        font = self.audio_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.4)
        self.audio_label.setFont(font)
        self.reason_label = QLabel("")
        self.reason_label.setWordWrap(True)
        # The bar's text goes in a label beside it: text drawn over the fill is half hidden
        # in some styles. The bar keeps it as its format, for accessibility.
        self.relevance_bar = QProgressBar()
        self.relevance_bar.setRange(0, 1000)
        self.relevance_bar.setTextVisible(False)
        self.relevance_bar.setMaximumHeight(16)
        self.relevance_label = QLabel()
        self.relevance_label.setMinimumWidth(
            self.relevance_label.fontMetrics().horizontalAdvance("relevance 0.00 >= threshold 0.00  ")
        )  # the longest text: the bar does not move as it changes
        self._set_relevance_text("relevance —")
        relevance_row = QHBoxLayout()
        relevance_row.addWidget(self.relevance_label)
        relevance_row.addWidget(self.relevance_bar, 1)
        self.tags_label = QLabel("Audio tags: —")
        self.tags_label.setWordWrap(True)

        # Spectrogram.
        self.spectrogram = pg.PlotWidget(background=bg)
        self.spectrogram.setMinimumHeight(90)
        self.spectrogram.setMouseEnabled(x=False, y=False)
        self.spectrogram.hideButtons()
        self.spectrogram.hideAxis("left")
        self.spectrogram.getAxis("bottom").setTextPen(fg)
        self.spectrogram.setLabel("bottom", "last seconds (log-mel)")
        self.spec_image = pg.ImageItem(axisOrder="row-major")
        self.spec_image.setColorMap(pg.colormap.get("viridis"))
        self.spectrogram.addItem(self.spec_image)
        self._spec_seconds = len(live.spectrogram) / 100.0  # 10 ms columns
        self.spectrogram.setXRange(-self._spec_seconds, 0, padding=0)
        self.spectrogram.setYRange(0, live.mel_bins, padding=0)

        self.stats_label = QLabel("latency — · inference — windows/s")
        self.stats_label.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(bars_box)
        layout.addWidget(self.timeline, 2)
        layout.addWidget(self.audio_label)
        layout.addWidget(self.reason_label)
        layout.addLayout(relevance_row)
        layout.addWidget(self.tags_label)
        layout.addWidget(self.spectrogram, 1)
        layout.addWidget(self.stats_label)

        live.result_added.connect(self._on_live_result_added)
        live.cleared.connect(self._on_live_cleared)
        live.stats_changed.connect(self._on_live_stats_changed)
        live.labels_changed.connect(lambda _labels: self._on_live_cleared())
        player.position_changed.connect(self._on_player_position_changed)
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / min(refresh_hz, 30.0)))
        self.timer.timeout.connect(self._on_timer_timeout)
        self.timer.start()

    # -- text, on each result -------------------------------------------------------
    def _on_live_result_added(self, r: WindowResult) -> None:
        for i in range(TOP_K):
            if i < len(r.top):
                t = r.top[i]
                self.bar_labels[i].setText(t.label)
                self.bars[i].setValue(int(t.score * 1000))
                self.bars[i].setFormat(f"{t.score:.2f}")
            else:
                self.bar_labels[i].setText("—")
                self.bars[i].setValue(0)
                self.bars[i].setFormat("")
        self.confidence_label.setText(
            "" if r.confident else "No confident action (best score below the model's threshold)"
        )
        self.confidence_label.setHidden(r.confident)
        a = r.audio
        verdict = "NO AUDIO" if not a.present else ("AUDIO DROPPED" if a.dropped else "AUDIO USED")
        if verdict != self.audio_label.text():  # restyling is costly: only on a change
            self.audio_label.setText(verdict)
            self.audio_label.setStyleSheet(AUDIO_STYLES[verdict])
        threshold = self._live.relevance_threshold
        self.reason_label.setText(r.audio_reason(threshold))
        if a.relevance is None:
            self.relevance_bar.setValue(0)
            self._set_relevance_text(f"relevance — (threshold {threshold:.2f})")
        else:
            self.relevance_bar.setValue(int(a.relevance * 1000))
            verdict = ">=" if a.relevance >= threshold else "<"
            self._set_relevance_text(f"relevance {a.relevance:.2f} {verdict} threshold {threshold:.2f}")
        self.threshold_line.setValue(threshold)
        tags = ", ".join(f"{t.label} {t.score:.2f}" for t in a.tags) or "—"
        self.tags_label.setText(f"Audio tags: {tags}")
        self._dirty = True

    def _on_live_stats_changed(self, s: InferenceStats) -> None:
        skipped = f" · {s.skipped} windows skipped" if s.skipped else ""
        self.stats_label.setText(
            f"latency {s.latency * 1000:.0f} ms · inference {s.rate:.1f} windows/s{skipped}"
        )

    def _on_live_cleared(self) -> None:
        for name, bar in zip(self.bar_labels, self.bars, strict=True):
            name.setText("—")
            bar.setValue(0)
            bar.setFormat("")
        self.confidence_label.setVisible(False)
        self.audio_label.setText("AUDIO —")
        self.audio_label.setStyleSheet("")
        self.reason_label.setText("")
        self.tags_label.setText("Audio tags: —")
        self.relevance_bar.setValue(0)
        self._set_relevance_text("relevance —")
        self._dirty = True

    def _set_relevance_text(self, text: str) -> None:
        self.relevance_label.setText(text)
        self.relevance_bar.setFormat(text)

    def _on_player_position_changed(self, _position: float) -> None:
        self._position_dirty = True

    # -- plots, on the timer ---------------------------------------------------------
    def _on_timer_timeout(self) -> None:
        if not self.isVisible():
            return
        self._tick += 1
        if self._position_dirty:
            self._position_dirty = False
            self._refresh_position()
        if self._dirty:
            self._dirty = False
            self._refresh_curves()
        # The spectrogram is the costliest item to repaint: 15 Hz is smooth enough.
        if self._tick % 2 == 0 and self._spec_version != self._live.spectrogram_version:
            self._spec_version = self._live.spectrogram_version
            self.spec_image.setImage(self._live.spectrogram.T, autoLevels=False, levels=(-12.0, 8.0))
            self.spec_image.setRect(-self._spec_seconds, 0, self._spec_seconds, self._live.mel_bins)
        self.refresh_count += 1

    def _refresh_position(self) -> None:
        """Moves the position marker; the view pages forward (not every tick: redrawing the
        axis is what costs) so the marker always has the recent past on its left."""
        pos = self._player.position
        self.position_line.setValue(pos)
        lo, hi = self._view
        if not lo + 1.0 <= pos <= hi - 1.0:
            lo = max(-0.5, pos - TIMELINE_SECONDS + PAGE_SECONDS)
            self._view = (lo, lo + TIMELINE_SECONDS)
            self.timeline.setXRange(*self._view, padding=0)
            self._dirty = True

    def _refresh_curves(self) -> None:
        lo, hi = self._view
        visible = [r for r in self._live.results if lo - 5 <= r.end <= hi + 5]
        latest = self._live.latest
        labels = self._live.labels
        legend = self.timeline.plotItem.legend
        if legend is not None:
            legend.setVisible(bool(visible))
        if not visible or latest is None:
            for c in self.curves:
                c.setData([], [])
            self.relevance_curve.setData([], [])
            return
        x = np.fromiter((r.end for r in visible), dtype=np.float64, count=len(visible))
        index = {name: i for i, name in enumerate(labels)}
        names = [
            latest.top[k].label if k < len(latest.top) and latest.top[k].label in index else ""
            for k in range(TOP_K)
        ]
        for curve, name in zip(self.curves, names, strict=True):
            if name:
                ci = index[name]
                y = np.array(
                    [r.scores[ci] if ci < len(r.scores) else np.nan for r in visible], dtype=np.float64
                )
                curve.setData(x, y, connect="finite")
            else:
                curve.setData([], [])
        if legend is not None and names != self._legend_names:  # rebuilt only when the top-5 changes
            self._legend_names = names
            legend.clear()
            for curve, name in zip(self.curves, names, strict=True):
                if name:
                    legend.addItem(curve, name)
            legend.addItem(self.relevance_curve, "relevance")
        rel = np.array(
            [np.nan if r.audio.relevance is None else r.audio.relevance for r in visible], dtype=np.float64
        )
        if np.isfinite(rel).any():
            self.relevance_curve.setData(x, rel, connect="finite")
        else:
            self.relevance_curve.setData([], [])
