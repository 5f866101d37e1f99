"""The confusion-matrix image: readable names, formatted colour-bar ticks, any class count."""

from __future__ import annotations

import numpy as np
import pytest

from imd_core.train.metrics import CONFUSION_LABEL_CHARS, confusion_figure, save_confusion_png


def _tick_texts(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


@pytest.mark.parametrize("n", [3, 40])
def test_confusion_image_is_readable(tmp_path, n):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 4, size=(n, n)) + 6 * np.eye(n, dtype=np.int64)
    names = [f"class {i} " + "with a very long Kinetics-style name" * (i % 2) for i in range(n)]
    fig = confusion_figure(counts.tolist(), names, title="validation, epoch 1 (best)")
    fig.canvas.draw()
    ax, bar = fig.axes
    # The colour bar reads 0%..100%, every tick distinct (not "0,0,0,0,1").
    ticks = _tick_texts(bar.yaxis)
    assert ticks == ["0%", "25%", "50%", "75%", "100%"]
    # Every class is named, long names cut with an ellipsis, x labels rotated.
    xs = _tick_texts(ax.xaxis)
    assert len(xs) == n and len(set(xs)) == n
    assert all(len(x) <= CONFUSION_LABEL_CHARS for x in xs) and any(x.endswith("\u2026") for x in xs)
    assert all(t.get_rotation() >= 45 for t in ax.xaxis.get_ticklabels())
    assert _tick_texts(ax.yaxis) == xs
    # Labels shrink with the class count but stay legible; counts are in the cells when they fit.
    size = ax.xaxis.get_ticklabels()[0].get_fontsize()
    assert 6 <= size <= 10 and (size == 10) == (n == 3)
    cells = [t.get_text() for t in ax.texts]
    assert (sorted(map(int, cells)) == sorted(counts[counts > 0].tolist())) if n == 3 else not cells
    assert f"{int(counts.sum())} clips" in ax.get_title()
    # Nothing drawn outside the figure (the layout engine made room for the rotated names).
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for label in ax.xaxis.get_ticklabels() + ax.yaxis.get_ticklabels():
        extent = label.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.y0 >= box.y0 - 1 and extent.x1 <= box.x1 + 1
    png = save_confusion_png(counts.tolist(), names, tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
