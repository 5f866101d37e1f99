"""Units of the app without windows: audio ring and clocks, frame queue, spectrogram,
the audio decision in words, batch export formats, state signals, table models."""

from __future__ import annotations

import csv
import dataclasses
import json
import time

import numpy as np
import pytest

from imd_app.audio_output import AudioOutput, AudioRing, WallClock
from imd_app.controllers.batch_controller import best_window, export_csv, export_json
from imd_app.frame_queue import FrameQueue
from imd_app.spectrogram import LogMelStreamer, resample_linear
from imd_app.types import BatchRow, VideoFrame
from imd_core.inference.results import AudioResult, LabelScore, WindowResult, csv_header

SAVLD = {"playing guitar": ("Guitar", "Music"), "chopping wood": ("Wood", "Chopping (food)")}


def audio_reason(result: WindowResult, threshold: float, savld: dict) -> str:
    """The explanation of a result whose converter found ``savld``'s labels for its top class."""
    audio = dataclasses.replace(result.audio, savld_labels=savld.get(result.label))
    return dataclasses.replace(result, audio=audio).audio_reason(threshold)


def _result(
    top1="playing guitar",
    tags=("Speech", "Music"),
    relevance=0.3,
    dropped=True,
    present=True,
    iou=None,
    start=0.0,
):
    return WindowResult(
        path="a.mp4",
        start=start,
        end=start + 2.0,
        top=(
            LabelScore(top1, 0.7),
            LabelScore("chopping wood", 0.2),
            LabelScore("dribbling basketball", 0.1),
        ),
        audio=AudioResult(
            present=present,
            tags=tuple(LabelScore(t, 0.5) for t in tags) if present else (),
            relevance=relevance if present else None,
            dropped=dropped,
            savld_iou=iou,
        ),
        latency=0.12,
    )


def test_audio_ring_keeps_order_time_and_bounds():
    ring = AudioRing(sample_rate=1000, max_seconds=1.0)
    ring.reset(5.0)
    assert ring.write(np.arange(600, dtype=np.float32)) == 600
    assert ring.write(np.arange(600, dtype=np.float32)) == 400  # bounded: only what fits
    t, got = ring.read(250)
    assert t == pytest.approx(5.0) and got[0] == 0 and got[-1] == 249
    t, got = ring.read(1000)
    assert t == pytest.approx(5.25) and len(got) == 750  # underrun: fewer samples, no padding
    ring.eof = True
    t, got = ring.read(100)
    assert t == pytest.approx(6.0) and len(got) == 100 and not got.any()  # silence after the end


def test_wall_clock_runs_pauses_and_seeks():
    clock = WallClock()
    clock.seek(3.0)
    assert clock.position() == pytest.approx(3.0)
    clock.set_running(True)
    time.sleep(0.05)
    p = clock.position()
    assert 3.04 <= p < 3.5
    clock.set_running(False)
    frozen = clock.position()
    time.sleep(0.02)
    assert clock.position() == pytest.approx(frozen)


def test_muted_output_pumps_heard_audio_at_clock_rate():
    heard = []
    ring = AudioRing(sample_rate=8000)
    ring.reset(0.0)
    ring.write(np.ones(8000, np.float32))
    out = AudioOutput(ring, on_heard=lambda t, s: heard.append((t, len(s))), use_device=False)
    assert not out.has_device and out.notice
    out.set_running(True)
    time.sleep(0.1)
    out.pump()
    total = sum(n for _, n in heard) / 8000
    assert 0.08 <= total <= 0.3
    assert heard[0][0] == pytest.approx(0.0)
    out.close()


def test_frame_queue_due_frames_generations_and_bounds():
    q = FrameQueue(capacity=3)
    gen = q.new_generation()
    frames = [VideoFrame(time=t, rgb=np.zeros((2, 2, 3), np.uint8), image=None) for t in (0.0, 0.1, 0.2, 0.3)]
    assert [q.push(f, gen) for f in frames] == [True, True, True, False]
    due, dropped = q.take_due(0.15)
    assert due.time == pytest.approx(0.1) and dropped == 1
    old = gen
    q.new_generation()
    assert not q.push(frames[3], old)  # decoded for a seek that is no longer wanted
    assert len(q) == 0


def test_log_mel_streamer_finds_the_tone_band():
    sr = 16000
    t = np.arange(sr) / sr
    low = LogMelStreamer(sr, 64)
    high = LogMelStreamer(sr, 64)
    cols_low = np.concatenate(
        [low.push(b) for b in np.split(np.sin(2 * np.pi * 300 * t).astype(np.float32), 10)]
    )
    cols_high = high.push(np.sin(2 * np.pi * 4000 * t).astype(np.float32))
    assert cols_low.shape == cols_high.shape == (98, 64)  # 1 s in 10 blocks == 1 s at once
    assert cols_low.mean(0).argmax() < cols_high.mean(0).argmax()
    assert len(resample_linear(np.zeros(480, np.float32), 48000, 16000)) == 160


def test_audio_reason_in_words():
    dropped = audio_reason(_result(tags=("Speech", "Music"), iou=None), 0.5, {"playing guitar": ("Guitar",)})
    assert dropped == "tags Speech, Music: no overlap with SAVLD(playing guitar); relevance 0.30 < 0.50"
    used = audio_reason(_result(tags=("Guitar", "Music"), relevance=0.9, dropped=False, iou=1.0), 0.5, SAVLD)
    assert "match SAVLD(playing guitar) on Guitar, Music (IoU 1.00)" in used and ">= 0.50" in used
    assert audio_reason(_result(present=False), 0.5, SAVLD) == "no audio in this window: video only"
    assert "SAVLD has no entry" in audio_reason(_result(top1="dribbling basketball"), 0.5, SAVLD)


def test_exports_match_imd_predict_formats(tmp_path):
    rows = [
        BatchRow(_result(start=0.0), 4.0),
        BatchRow(_result(start=2.0, dropped=False, relevance=0.8), 4.0),
    ]
    export_json(rows, tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [{**r.result.to_json_dict(), "warnings": []} for r in rows]
    assert set(json.loads(lines[0])) == {"path", "start", "end", "top", "audio", "confident", "warnings"}
    export_csv(rows, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == csv_header() and table[1] == rows[0].result.to_csv_row()
    assert best_window(rows) is rows[0]


def test_state_objects_emit_once_per_change(qtbot):
    from imd_app.state import PlayerState

    state = PlayerState()
    seen = []
    state.loop_changed.connect(seen.append)
    state.set_loop(True)
    state.set_loop(True)
    state.set_volume(7.0)  # clamped
    assert seen == [True] and state.volume == 1.0


def test_batch_tables_sort_and_filter(qtbot):
    from PySide6.QtCore import QSortFilterProxyModel, Qt

    from imd_app.state import BatchState
    from imd_app.table_models import SORT_ROLE, BatchQueueModel, BatchResultsModel

    state = BatchState()
    queue_model, results = BatchQueueModel(state), BatchResultsModel(state)
    assert state.add_item("a.mp4") == 0 and state.add_item("a.mp4") is None
    state.update_item(0, status="running", progress=0.5)
    assert queue_model.index(0, 2).data() == "50%"
    a = _result(start=0.0)
    b = WindowResult("b.mp4", 0.0, 1.0, (LabelScore("chopping wood", 0.9),), AudioResult(present=False))
    state.add_rows([BatchRow(a, 4.0), BatchRow(b, 1.0), BatchRow(_result(start=2.0), 4.0)])
    assert results.rowCount() == 2 and results.summary(0).windows == 2
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(results)
    proxy.setSortRole(SORT_ROLE)
    proxy.sort(2, Qt.SortOrder.DescendingOrder)
    assert proxy.index(0, 0).data() == "b.mp4"
    proxy.setFilterKeyColumn(-1)
    proxy.setFilterFixedString("guitar")
    assert proxy.rowCount() == 1 and proxy.index(0, 1).data() == "playing guitar"


def test_audio_callback_plays_the_ring_at_volume_and_reports_what_was_heard():
    """The sound-device callback's arithmetic (called directly: no PortAudio device here)."""
    heard = []
    ring = AudioRing(sample_rate=1000)
    ring.reset(2.0)
    ring.write(np.full(300, 0.5, np.float32))
    out = AudioOutput(ring, on_heard=lambda t, s: heard.append((t, len(s))), use_device=False)
    out.set_volume(0.5)
    block = np.ones((256, 1), np.float32)
    out._callback(block, 256, None, None)  # paused: silence, nothing heard
    assert not block.any() and heard == []
    out.set_running(True)
    out._callback(block, 256, None, None)
    assert np.allclose(block[:, 0], 0.25) and heard == [(2.0, 256)]
    out._callback(block, 256, None, None)  # underrun: 44 samples, then silence
    assert (
        np.allclose(block[:44, 0], 0.25) and not block[44:].any() and heard[-1] == (pytest.approx(2.256), 44)
    )
    out.close()


def test_audio_reason_names_only_the_tags_the_rule_counted():
    """Tags scored 0.00 or below 'Silence' are not evidence: the reason never lists them."""
    r = _result(tags=("Silence", "Guitar", "Music"), iou=0.0)
    r = dataclasses.replace(r, audio=dataclasses.replace(r.audio, heard=()))
    assert audio_reason(r, 0.5, SAVLD) == "nothing heard above 'Silence': audio dropped"
    r = dataclasses.replace(
        r, audio=dataclasses.replace(r.audio, heard=("Music",), savld_iou=0.5, dropped=False)
    )
    reason = audio_reason(r, 0.5, SAVLD)
    assert reason.startswith("tags Music: match SAVLD(playing guitar) on Music") and "Guitar" not in reason


def test_live_panel_and_batch_table_say_no_confident_action(qtbot):
    from imd_app.state import BatchState, LiveState, PlayerState
    from imd_app.table_models import BatchResultsModel
    from imd_app.types import BatchRow
    from imd_app.widgets.live_panel import LivePanel

    live = LiveState()
    live.set_model(("playing guitar", "chopping wood", "dribbling basketball"), 0.5)
    panel = LivePanel(live, PlayerState())
    qtbot.addWidget(panel)
    unsure = dataclasses.replace(_result(), confident=False)
    live.add_result(unsure)
    assert not panel.confidence_label.isHidden() and "No confident action" in panel.confidence_label.text()
    assert panel.bar_labels[0].text() == "playing guitar"  # the ranking is still shown
    live.add_result(_result())
    assert panel.confidence_label.isHidden()
    # the explanation is the result's own, against the threshold of the model the state holds
    assert panel.reason_label.text() == _result().audio_reason(0.5)
    assert panel.relevance_label.text() == "relevance 0.30 < threshold 0.50"
    state = BatchState()
    model = BatchResultsModel(state)
    state.add_rows([BatchRow(unsure, 2.0)])
    assert model.data(model.index(0, 1)) == "no confident action (best: playing guitar)"


def test_stall_monitor_counts_gui_work_not_preemption(qtbot):
    """A sleep (the OS running something else) is a wall-clock gap with no CPU; a busy loop
    on the GUI thread is both: only the second is our code stalling the GUI."""
    import time

    from imd_app.stall_monitor import StallMonitor

    monitor = StallMonitor()
    monitor.start()
    qtbot.wait(20)
    time.sleep(0.2)  # stands in for preemption: no CPU on this thread
    qtbot.wait(20)
    t = time.thread_time()
    while time.thread_time() - t < 0.12:  # real work on the GUI thread
        pass
    qtbot.wait(20)
    monitor.stop()
    assert monitor.worst_ms >= 190.0
    assert 100.0 <= monitor.worst_busy_ms < 190.0


def test_logs_job_history_and_new_runs_resolve_under_imd_app_data_dir(tmp_path, monkeypatch):
    import logging
    from pathlib import Path

    from imd_app.app_setup import setup_logging
    from imd_app.training.form import default_run_dir
    from imd_app.training.history import JobHistory
    from imd_app.user_data import DATA_DIR_ENV, user_data_dir

    data = tmp_path / "elsewhere"
    monkeypatch.setenv(DATA_DIR_ENV, str(data))
    root = logging.getLogger()
    level = root.level
    try:
        log_path = setup_logging(0)
    finally:  # leave no handler writing into tmp_path behind
        for handler in [h for h in root.handlers if getattr(h, "_imd_app", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    assert user_data_dir() == data and data.is_dir()
    assert log_path == data / "logs" / "imd-app.log"
    assert JobHistory().path == data / "training_jobs.json"
    assert Path(default_run_dir()).parent == data / "runs"
