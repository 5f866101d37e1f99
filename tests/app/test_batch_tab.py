"""The Batch tab with the real model: queue, progress, results table, export, cancel, open in player."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PySide6.QtCore import Qt

from .conftest import batch_finished as _finished
from .conftest import load_model_and_wait as _load

pytestmark = pytest.mark.gui

WINDOW = 1.28  # the tiny model's audio length: the batch's default window


def test_batch_classifies_files_and_folders_and_exports_like_imd_predict(
    qtbot, window, tiny_model_dir, clips_dir, tmp_path
):
    _load(qtbot, window, tiny_model_dir)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    progress = []
    window.batch_state.item_changed.connect(lambda i: progress.append(window.batch_state.items[i].progress))
    window.batch.add_paths([str(clips_dir), str(bad)])
    qtbot.waitUntil(lambda: _finished(window), timeout=120000)
    status = {i.path.split("/")[-1]: i for i in window.batch_state.items}
    assert {k: v.status for k, v in status.items()} == {
        "guitar.mp4": "done",
        "silent video.mp4": "done",
        "wood.mp4": "done",
        "bad.mp4": "failed",
    }
    assert "bad.mp4" in status["bad.mp4"].message or status["bad.mp4"].message  # the reason, in words
    assert any(0 < p < 1 for p in progress)  # per-window progress was reported
    tab = window.batch_tab
    assert tab.proxy.rowCount() == 3
    tab.results_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert [tab.proxy.index(r, 0).data() for r in range(3)] == ["guitar.mp4", "silent video.mp4", "wood.mp4"]
    assert tab.proxy.index(1, 3).data() == "no" and tab.proxy.index(1, 4).data() == "yes"  # no audio: dropped
    tab.filter_edit.setText("wood.mp4")  # (a bare "wood" also matches the label "chopping wood")
    assert tab.proxy.rowCount() == 1
    tab.filter_edit.clear()

    out_json, out_csv = tmp_path / "r.jsonl", tmp_path / "r.csv"
    tab.export_requested.emit(str(out_json))
    tab.export_requested.emit(str(out_csv))
    app_rows = [json.loads(line) for line in out_json.read_text(encoding="utf-8").splitlines()]
    files = sorted({r["path"] for r in app_rows})
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "imd_core",
            "predict",
            *files,
            "--model",
            str(tiny_model_dir),
            "--window",
            str(WINDOW),
            "--json",
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    cli_rows = [json.loads(line) for line in cli.stdout.splitlines() if line.strip()]
    key = lambda r: (r["path"], r["start"])  # noqa: E731
    app_rows.sort(key=key)
    cli_rows.sort(key=key)
    assert [key(r) for r in app_rows] == [key(r) for r in cli_rows]
    for a, c in zip(app_rows, cli_rows, strict=True):
        assert a.keys() == c.keys() and a["audio"].keys() == c["audio"].keys()
        assert [t["label"] for t in a["top"]] == [t["label"] for t in c["top"]]
        assert a["top"][0]["score"] == pytest.approx(c["top"][0]["score"], abs=1e-4)
        assert a["audio"]["dropped"] == c["audio"]["dropped"]
    header = out_csv.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("path,start,end,top1_label,top1_score")
    assert len(out_csv.read_text(encoding="utf-8").splitlines()) == len(app_rows) + 1


def test_double_click_opens_the_best_window_in_the_player(qtbot, window, tiny_model_dir, clip):
    _load(qtbot, window, tiny_model_dir)
    window.batch.add_paths([str(clip)])
    qtbot.waitUntil(lambda: _finished(window), timeout=60000)
    tab = window.batch_tab
    rows = window.batch.rows_for(str(clip))
    best = max(rows, key=lambda r: r.result.score)
    with qtbot.waitSignal(tab.open_requested, timeout=5000) as blocker:
        tab.results_view.doubleClicked.emit(tab.proxy.index(0, 0))
    assert blocker.args == [str(clip), pytest.approx(best.result.start)]
    qtbot.waitUntil(lambda: window.player_state.media is not None, timeout=10000)
    assert window.tabs.currentWidget() is window.player_tab
    assert window.player_state.position >= best.result.start - 1e-6


def test_cancel_all_stops_the_queue(qtbot, window, tiny_model_dir, clips_dir):
    _load(qtbot, window, tiny_model_dir)
    files = [
        str(clips_dir / "guitar.mp4"),
        str(clips_dir / "silent video.mp4"),
        str(clips_dir / "sub" / "wood.mp4"),
    ]
    window.batch.add_paths(files)
    qtbot.waitUntil(lambda: len(window.batch_state.items) == 3, timeout=10000)
    window.batch.cancel_all()
    qtbot.waitUntil(lambda: _finished(window), timeout=60000)
    statuses = [i.status for i in window.batch_state.items]
    assert statuses.count("cancelled") >= 2  # at most the running one may have finished first


def test_batch_without_a_model_says_what_to_do(qtbot, window, clip):
    with qtbot.waitSignal(window.batch.message, timeout=5000) as blocker:
        window.batch.add_paths([str(clip)])
    assert "load a model" in blocker.args[0]
