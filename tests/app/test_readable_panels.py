"""Readability of the panels: plots in the app's palette with legends off the curves, a
live panel whose width does not follow text lengths, relevance text never under its fill."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QLabel

from imd_app.state import LiveState, PlayerState
from imd_app.types import MediaOpened
from imd_core.inference.results import AudioResult, LabelScore, WindowResult

pytestmark = pytest.mark.gui


def _palette(base: str, text: str) -> QPalette:
    palette = QPalette(QApplication.instance().palette())
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive, QPalette.ColorGroup.Disabled):
        palette.setColor(group, QPalette.ColorRole.Base, QColor(base))
        palette.setColor(group, QPalette.ColorRole.Window, QColor(base))
        palette.setColor(group, QPalette.ColorRole.Text, QColor(text))
        palette.setColor(group, QPalette.ColorRole.WindowText, QColor(text))
    return palette


@pytest.mark.parametrize(("base", "text"), [("#ffffff", "#000000"), ("#232326", "#e6e6e6")])
def test_training_plots_follow_the_palette(qtbot, base, text):
    from imd_app.training.monitor import MonitorPanel

    panel = MonitorPanel()
    qtbot.addWidget(panel)
    panel.setPalette(_palette(base, text))  # as when the system switches light/dark mode
    for plot in (panel.loss_plot, panel.acc_plot):
        assert plot.backgroundBrush().color().name() == base
        item = plot.getPlotItem()
        for name in ("left", "bottom"):
            assert item.getAxis(name).textPen().color().name() == text
        assert QColor(item.titleLabel.opts["color"]).name() == text
        # The legend is a row above the plots, not an item inside the view over the curves.
        assert item.legend is None
    legend = panel.legend.text()
    for name in ("train loss per step", "train", "val", "relevance accuracy"):
        assert name in legend


def _media(source: str) -> MediaOpened:
    return MediaOpened(
        source=source, kind="file", duration=10.0, fps=25.0, width=640, height=360, has_audio=True
    )


def test_a_long_path_does_not_change_the_live_panel_width(qtbot):
    from imd_app.widgets.player_tab import PlayerTab

    player = PlayerState()
    tab = PlayerTab(player, LiveState(), ["0"])
    qtbot.addWidget(tab)
    tab.resize(1200, 700)
    tab.show()
    qtbot.waitExposed(tab)
    player.set_media(_media("/clips/short.mp4"))
    qtbot.wait(50)
    width, hint = tab.live_panel.width(), tab.minimumSizeHint().width()
    source_hint = tab.source_label.sizeHint().width()
    long_path = "/data/" + "very_long_folder_name/" * 13 + "clip.mp4"
    assert len(long_path) >= 300
    player.set_media(_media(long_path))
    qtbot.wait(50)
    assert tab.live_panel.width() == width and tab.minimumSizeHint().width() == hint
    assert tab.source_label.sizeHint().width() == source_hint
    assert long_path in tab.source_label.text() and long_path in tab.source_label.toolTip()
    shown = QLabel.text(tab.source_label)
    assert "\u2026" in shown and shown.endswith("with audio")  # elided in the middle: the end still shows
    assert tab.source_label.fontMetrics().horizontalAdvance(shown) <= tab.source_label.width()


def _live_result(
    labels: tuple[str, ...], relevance: float | None, confident: bool = True, end: float = 2.0
) -> WindowResult:
    return WindowResult(
        path="live",
        start=end - 2.0,
        end=end,
        top=tuple(LabelScore(name, 0.9 - 0.1 * i) for i, name in enumerate(labels[:5])),
        audio=AudioResult(
            present=True,
            tags=(LabelScore("Speech", 0.8),),
            relevance=relevance,
            dropped=relevance is not None and relevance < 0.7,
        ),
        latency=0.05,
        scores=tuple(np.linspace(0.9, 0.1, len(labels)).tolist()),
        confident=confident,
    )


def test_long_class_names_do_not_widen_the_live_panel(qtbot):
    from imd_app.widgets.live_panel import LivePanel

    live = LiveState()
    short = ("a", "b", "c", "d", "e")
    long = tuple(f"passing American football (not in game) {i}" * 2 for i in range(5))
    live.set_model(short + long, 0.7)
    panel = LivePanel(live, PlayerState())
    qtbot.addWidget(panel)
    panel.resize(420, 800)
    panel.show()
    qtbot.waitExposed(panel)
    live.add_result(_live_result(short, 0.5))
    qtbot.wait(20)
    minimum, bar = panel.minimumSizeHint().width(), panel.bars[0].geometry()
    live.add_result(_live_result(long, 0.5, confident=False, end=2.5))
    qtbot.wait(20)
    assert panel.bar_labels[0].text() == long[0] and panel.bar_labels[0].toolTip() == long[0]
    assert panel.minimumSizeHint().width() == minimum and panel.bars[0].geometry() == bar
    assert not panel.confidence_label.isHidden() and panel.confidence_label.width() <= panel.width()


def test_relevance_text_is_beside_its_bar_not_under_the_fill(qtbot):
    from imd_app.widgets.live_panel import LivePanel

    live = LiveState()
    live.set_model(("a", "b", "c", "d", "e"), 0.7)
    panel = LivePanel(live, PlayerState())
    qtbot.addWidget(panel)
    panel.resize(420, 800)
    panel.show()
    qtbot.waitExposed(panel)
    bar_x = None
    for relevance in (0.95, 0.5, None):
        live.add_result(_live_result(("a", "b", "c", "d", "e"), relevance))
        qtbot.wait(20)
        label, bar = panel.relevance_label, panel.relevance_bar
        assert not bar.isTextVisible()
        assert label.text() == bar.format() and "threshold 0.70" in label.text()
        assert not label.geometry().intersects(bar.geometry())
        assert label.fontMetrics().horizontalAdvance(label.text()) <= label.contentsRect().width()
        bar_x = bar.x() if bar_x is None else bar_x
        assert bar.x() == bar_x  # the bar does not move as the text changes
