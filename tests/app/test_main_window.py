"""The main window: tabs, menus, drag and drop, settings, errors, playback without a model."""

from __future__ import annotations

import logging
import threading

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QAction, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox

pytestmark = pytest.mark.gui


def _wait_playing_to(qtbot, window, seconds: float, timeout: int = 15000) -> None:
    qtbot.waitUntil(lambda: window.player_state.position >= seconds, timeout=timeout)


def test_tabs_menus_and_shortcuts(window):
    assert [window.tabs.tabText(i) for i in range(3)] == ["Player", "Batch", "Training"]
    from imd_app.training.tab import TrainingTab

    assert isinstance(window.training_tab, TrainingTab)
    shortcuts = {
        a.text().replace("&", ""): a.shortcut().toString()
        for m in window.menuBar().findChildren(type(window.menuBar().addMenu("x")))
        for a in m.actions()
    }
    assert shortcuts["Open video…"] == QKeySequence(QKeySequence.StandardKey.Open).toString()
    assert shortcuts["Play / pause"] == "Space"
    assert shortcuts["Model manager…"] == "Ctrl+M"
    assert shortcuts["Debug overlay (A/V drift)"] == "F3"
    assert window.status_device.text().startswith("device")


def test_plays_a_file_pauses_seeks_and_loops_without_a_model(qtbot, window, clip):
    window.open_in_player(str(clip))
    qtbot.waitUntil(lambda: window.player_state.playing, timeout=10000)
    media = window.player_state.media
    assert media.kind == "file" and media.has_audio and media.duration == pytest.approx(4.0, abs=0.1)
    assert window.player_state.audio_notice  # muted: the notice says so
    _wait_playing_to(qtbot, window, 0.5)
    assert window.player_tab.video.image is not None and window.player.frames_presented > 3
    window.player.pause()
    p = window.player_state.position
    qtbot.wait(200)
    assert window.player_state.position == pytest.approx(p, abs=0.05)
    shown = window.player.frames_presented
    window.player.seek(2.0)  # paused: the frame at the new position is shown once decoded
    qtbot.waitUntil(lambda: window.player.frames_presented == shown + 1, timeout=10000)
    assert not window.player_state.playing and window.player_state.position == pytest.approx(2.0)
    window.player.seek(3.5)
    window.player.set_loop(True)
    window.player.play()
    # Looping: the position wraps back to the start instead of stopping at the end.
    qtbot.waitUntil(
        lambda: 0.0 < window.player_state.position < 1.0 and window.player_state.playing, timeout=10000
    )
    window.player.set_loop(False)
    qtbot.waitUntil(lambda: not window.player_state.playing, timeout=15000)  # stops at the end
    assert window.player_state.position >= 3.8


def test_bad_file_gives_a_message_and_the_app_stays_usable(qtbot, window, tmp_path, clip):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    window.open_in_player(str(bad))
    qtbot.waitUntil(lambda: bool(window.player_state.error), timeout=10000)
    assert "broken.mp4" in window.player_state.error
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert any("broken.mp4" in b.text() for b in boxes)
    for b in boxes:
        b.close()
    window.open_in_player(str(clip))
    qtbot.waitUntil(lambda: window.player_state.playing, timeout=10000)
    assert window.player_state.error == ""


def test_missing_camera_gives_a_message(qtbot, window):
    window.player.open_camera("/dev/video-does-not-exist")
    qtbot.waitUntil(lambda: bool(window.player_state.error), timeout=10000)
    assert window.player_state.media is None


def test_incompatible_model_folder_is_refused_and_the_old_model_kept(qtbot, window, tmp_path, tiny_model_dir):
    window.load_model(str(tiny_model_dir))
    qtbot.waitUntil(
        lambda: window.model_state.info is not None or bool(window.model_state.error), timeout=60000
    )
    assert window.model_state.error == ""
    bad = tmp_path / "not_a_model"
    bad.mkdir()
    (bad / "config.json").write_text('{"size": "enormous"}', encoding="utf-8")
    window.load_model(str(bad))
    qtbot.waitUntil(lambda: bool(window.model_state.error), timeout=30000)
    assert window.model_state.info.folder == tiny_model_dir
    assert "model" in window.status_model.text()


def _drop(widget, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    )
    widget.dropEvent(event)
    return event


def test_drag_and_drop_routes_files_to_player_and_folders_to_batch(qtbot, window, clips_dir, clip):
    window.tabs.setCurrentWidget(window.player_tab)
    _drop(window, [clip])
    qtbot.waitUntil(lambda: window.player_state.media is not None, timeout=10000)
    assert window.player_state.media.source == str(clip)
    window.batch.cancel_all()
    _drop(window, [clips_dir])  # a folder goes to the batch queue (recursively)
    assert window.tabs.currentWidget() is window.batch_tab
    qtbot.waitUntil(lambda: len(window.batch_state.items) == 3, timeout=10000)
    paths = sorted(item.path for item in window.batch_state.items)
    assert [p.split("/")[-1] for p in paths] == ["guitar.mp4", "silent video.mp4", "wood.mp4"]
    window.batch.cancel_all()


def test_settings_are_kept(qtbot, settings, no_leaked_threads):
    from imd_app.main_window import MainWindow

    w = MainWindow(settings=settings, use_audio_device=False, cuda_available=False)
    qtbot.addWidget(w)
    w.player.set_volume(0.3)
    w.player.set_loop(True)
    w.tabs.setCurrentIndex(1)
    w.overlay_action.trigger()
    w.close()
    w2 = MainWindow(settings=settings, use_audio_device=False, cuda_available=False)
    qtbot.addWidget(w2)
    try:
        assert w2.player_state.volume == pytest.approx(0.3)
        assert w2.player_state.loop and w2.tabs.currentIndex() == 1
        assert w2.player_tab.video.overlay_visible
    finally:
        w2.shutdown()


def test_uncaught_exceptions_are_logged_and_reported(qtbot, tmp_path):
    from imd_app.app_setup import ExceptionReporter, setup_logging

    log_path = setup_logging(0, tmp_path)
    reporter = ExceptionReporter(show_dialogs=False)
    reporter.install()
    try:
        with qtbot.waitSignal(reporter.exception_raised, timeout=5000) as blocker:
            t = threading.Thread(target=lambda: 1 / 0, name="worker-x")
            t.start()
            t.join()
        assert blocker.args[0].startswith("ZeroDivisionError")
    finally:
        reporter.uninstall()
    for h in logging.getLogger().handlers:
        h.flush()
    text = log_path.read_text(encoding="utf-8")
    assert "uncaught exception in worker-x" in text and "ZeroDivisionError" in text
    assert log_path.parent.name == "logs"


def test_palette_follows_light_and_dark(qapp):
    from PySide6.QtGui import QPalette

    from imd_app.app_setup import apply_palette

    old = qapp.palette()
    try:
        assert apply_palette(qapp, dark=True)
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 100
        assert not apply_palette(qapp, dark=False)
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() > 150
    finally:
        qapp.setPalette(old)


def test_help_and_version():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "imd_app", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--self-test" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "imd_app", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.startswith("imd-app ")


def test_webcam_mode_through_opencv_with_a_file_as_camera(qtbot, window, clip):
    """A real ``WebcamSource`` (OpenCV opens a file like a camera); no microphone here -> a notice."""
    window.player_tab.camera_box.setEditText(str(clip))
    window.player_tab.open_camera_requested.emit(str(clip))
    qtbot.waitUntil(
        lambda: window.player_state.media is not None or bool(window.player_state.error), timeout=10000
    )
    assert window.player_state.error == ""
    media = window.player_state.media
    assert media.kind == "webcam" and (media.width, media.height) == (64, 48)
    qtbot.waitUntil(lambda: window.player.frames_presented > 0, timeout=10000)
    assert window.player_tab.video.image is not None
    notice = window.player_state.audio_notice
    assert "microphone" in notice  # recording it, or why it cannot
    assert not window.player_tab.transport.slider.isEnabled()  # a live source cannot seek
    window.player.close_media()
    assert window.player_state.media is None


def test_first_launch_loads_the_demo_model_and_opens_a_demo_clip(
    qtbot, window, tmp_path, monkeypatch, tiny_model_dir, clip
):
    import shutil

    resources = tmp_path / "resources"
    shutil.copytree(tiny_model_dir, resources / "demo_model")
    (resources / "demo_clips").mkdir()
    shutil.copy(clip, resources / "demo_clips" / "demo.mp4")
    monkeypatch.setenv("IMD_RESOURCES", str(resources))
    window.start_up(None)
    qtbot.waitUntil(
        lambda: len(window.live_state.results) >= 1 or bool(window.model_state.error), timeout=60000
    )
    assert window.model_state.error == ""
    assert window.model_state.info.folder == resources / "demo_model"
    assert window.player_state.media.source == str(resources / "demo_clips" / "demo.mp4")
    assert window.player_state.loop  # the short demo clip loops until the first results show
    window.player.close_media()
    window.start_up(None)  # not the first launch any more: no clip is opened
    qtbot.wait(300)
    assert window.player_state.media is None


def test_uncaught_exception_dialog_is_shown(qtbot, tmp_path):
    from imd_app.app_setup import ExceptionReporter, setup_logging

    setup_logging(0, tmp_path)
    reporter = ExceptionReporter(show_dialogs=True)
    try:
        reporter.report(RuntimeError, RuntimeError("boom in a worker"), None, "imd-decode")
        qtbot.waitUntil(
            lambda: any(
                isinstance(w, QMessageBox) and "boom in a worker" in w.text()
                for w in QApplication.topLevelWidgets()
                if w.isVisible()
            ),
            timeout=5000,
        )
    finally:
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QMessageBox):
                w.close()


def test_one_file_filter_and_both_batch_shortcuts(window, monkeypatch):
    """The player's and the batch tab's dialogs offer the same extensions, those `imd predict`
    scans for; Ctrl+B adds files and Ctrl+Shift+B a folder."""
    import imd_app.main_window as mw
    import imd_app.widgets.batch_tab as bt
    from imd_core.inference.inputs import MEDIA_EXTENSIONS

    assert mw.VIDEO_FILTER is bt.VIDEO_FILTER
    assert all(f"*{ext}" in bt.VIDEO_FILTER for ext in MEDIA_EXTENSIONS)
    shortcuts = {
        a.shortcut().toString(): a.text() for a in window.findChildren(QAction) if not a.shortcut().isEmpty()
    }
    assert (
        shortcuts["Ctrl+B"] == "Add files to &batch…" and shortcuts["Ctrl+Shift+B"] == "Add &folder to batch…"
    )
    seen = []
    monkeypatch.setattr(bt.QFileDialog, "getExistingDirectory", lambda *a, **k: seen.append("folder") or "")
    monkeypatch.setattr(bt.QFileDialog, "getOpenFileNames", lambda *a, **k: seen.append("files") or ([], ""))
    next(a for a in window.findChildren(QAction) if a.shortcut().toString() == "Ctrl+Shift+B").trigger()
    next(a for a in window.findChildren(QAction) if a.shortcut().toString() == "Ctrl+B").trigger()
    assert seen == ["folder", "files"]


def test_the_app_opens_kinetics400_by_default_once_it_is_built(tmp_path, monkeypatch):
    from imd_core.resources import default_app_model_dir, demo_model_dir

    monkeypatch.setenv("IMD_RESOURCES", str(tmp_path))
    assert default_app_model_dir() == demo_model_dir()
    (tmp_path / "kinetics400").mkdir()
    (tmp_path / "kinetics400" / "model.safetensors").write_bytes(b"")
    assert default_app_model_dir() == tmp_path / "kinetics400"


def test_a_burst_of_errors_shows_one_dialog_with_the_latest(window):
    for i in range(4):
        window._on_error(f"error number {i}")
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert len(boxes) == 1 and boxes[0].text() == "error number 3"
    assert boxes[0].informativeText().startswith("3 earlier message(s)")
    boxes[0].close()
