"""The player with the real model: live results in step with playback, seek, no audio,
what the model sees, and the GUI thread's longest stall during playback with inference."""

from __future__ import annotations

import os

import pytest

from imd_app.stall_monitor import StallMonitor
from tests.app.conftest import LABELS

from .conftest import load_model_and_wait as _load

pytestmark = pytest.mark.gui


def test_live_results_follow_playback(qtbot, window, tiny_model_dir, clip):
    _load(qtbot, window, tiny_model_dir)
    info = window.model_state.info
    assert info.labels == LABELS and info.audio_labels == 6 and info.savld_top_k == 2 and info.device == "cpu"
    assert window.status_model.text().startswith("model tiny_model")
    version = window.live_state.spectrogram_version
    window.open_in_player(str(clip))
    qtbot.waitUntil(lambda: len(window.live_state.results) >= 3, timeout=30000)
    results = list(window.live_state.results)
    for r in results:
        assert r.label in LABELS and 0.0 <= r.score <= 1.0
        assert -1e-6 <= r.start < r.end <= 4.0 + 1e-6
        assert (
            r.audio.present and r.audio.tags and r.audio_reason(info.relevance_threshold).startswith("tags ")
        )
        assert r.latency >= 0
    ends = [r.end for r in results]
    assert ends == sorted(ends)
    # The newest window ended at or before what is being shown.
    assert results[-1].end <= window.player_state.position + 0.2
    panel = window.player_tab.live_panel
    assert panel.bar_labels[0].text() in LABELS
    assert panel.audio_label.text() in ("AUDIO USED", "AUDIO DROPPED")
    assert panel.reason_label.text() == window.live_state.latest.audio_reason(info.relevance_threshold)
    assert "threshold 0.50" in panel.relevance_bar.format()
    assert window.live_state.spectrogram_version > version
    qtbot.waitUntil(lambda: window.live_state.stats.rate > 0, timeout=10000)
    assert window.status_rate.text().startswith("inference ")


def test_model_sees_exactly_the_frames_shown(qtbot, window, tiny_model_dir, clip):
    _load(qtbot, window, tiny_model_dir)
    window.open_in_player(str(clip))
    qtbot.waitUntil(lambda: window.player_state.position > 1.5, timeout=20000)
    window.player.pause()
    worker = window.player.inference
    qtbot.waitUntil(
        lambda: worker.frames_fed_since_reset == window.player.frames_presented_since_reset, timeout=10000
    )
    assert worker.frames_dropped == 0 and window.player.frames_presented_since_reset > 10


def test_seek_restarts_the_windows_at_the_new_position(qtbot, window, tiny_model_dir, clip):
    _load(qtbot, window, tiny_model_dir)
    window.open_in_player(str(clip))
    qtbot.waitUntil(lambda: len(window.live_state.results) >= 1, timeout=30000)
    window.player.seek(2.0)
    qtbot.waitUntil(
        lambda: window.live_state.latest is not None and window.live_state.latest.start >= 2.0 - 1e-3,
        timeout=20000,
    )
    assert window.player_state.position >= 2.0


def test_a_file_without_audio_shows_no_audio(qtbot, window, tiny_model_dir, clips_dir):
    _load(qtbot, window, tiny_model_dir)
    window.open_in_player(str(clips_dir / "silent video.mp4"))
    qtbot.waitUntil(lambda: len(window.live_state.results) >= 1, timeout=30000)
    r = window.live_state.latest
    assert not r.audio.present and r.audio.dropped and r.audio.relevance is None
    assert window.player_tab.live_panel.audio_label.text() == "NO AUDIO"


def test_gui_thread_stall_during_playback_with_inference(qtbot, window, tiny_model_dir, clip, capsys):
    """Reports the GUI thread's longest stall while a clip plays with inference (aim: < 50 ms)."""
    _load(qtbot, window, tiny_model_dir)
    window.player.set_loop(True)
    window.open_in_player(str(clip))
    qtbot.waitUntil(lambda: len(window.live_state.results) >= 1, timeout=30000)
    monitor = StallMonitor()
    windows = []
    window.live_state.result_added.connect(windows.append)
    monitor.start()
    qtbot.wait(4000)
    monitor.stop()
    worst, p99 = monitor.worst_ms, monitor.percentile_ms(99)
    with capsys.disabled():
        print(
            f"\nGUI stall during playback with inference: worst {worst:.1f} ms, p99 {p99:.1f} ms "
            f"over {len(monitor.gaps_ms)} ticks, {len(windows)} windows, "
            f"{window.player_state.playback_fps:.1f} fps shown"
        )
    assert len(windows) >= 3
    # The GUI thread's own work between two ticks (CPU time: preemption by other processes
    # on a busy machine does not count) must stay short whatever the load ...
    assert monitor.worst_busy_ms < 150.0, monitor.worst_busy_ms
    # ... and the wall-clock stall too, where the machine leaves this process its cores
    # (under load 5 on 2 cores the OS alone stalled it 393 ms: reported, not failed).
    if os.getloadavg()[0] < (os.cpu_count() or 1):
        assert worst < 250.0


def test_a_clip_shorter_than_the_window_still_gets_scored(qtbot, window, tiny_model_dir, tmp_path):
    from tests.media_factory import write_clip

    short = write_clip(tmp_path / "short.mp4", seconds=1.0, fps=15, width=64, height=48)  # window: 1.28 s
    _load(qtbot, window, tiny_model_dir)
    window.open_in_player(str(short))
    qtbot.waitUntil(lambda: len(window.live_state.results) >= 1, timeout=30000)
    r = window.live_state.latest
    assert r.start == pytest.approx(0.0, abs=1e-6) and 0.5 <= r.end <= 1.0
