"""The main window: composes the tabs, menus and status bar and wires state to controllers.

It holds no business logic: every action is a call on a controller or a state object.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QTabWidget

from imd_app.controllers.batch_controller import BatchController
from imd_app.controllers.player_controller import PlayerController
from imd_app.media_reader import camera_devices
from imd_app.state import BatchState, LiveState, ModelState, PlayerState
from imd_app.training.tab import TrainingTab
from imd_app.types import InferenceStats, ModelInfo, ModelSpec
from imd_app.widgets.batch_tab import VIDEO_FILTER, BatchTab
from imd_app.widgets.model_manager import ModelManager
from imd_app.widgets.player_tab import PlayerTab
from imd_core import __version__
from imd_core.errors import ImdError
from imd_core.media.sandbox import DEFAULT_DECODE_TIMEOUT
from imd_core.resources import (
    default_app_model_dir,
    demo_clips,
    demo_model_dir,
    resolve_model_dir,
)

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    def __init__(
        self,
        settings: QSettings | None = None,
        use_audio_device: bool = True,
        cuda_available: bool | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle(f"IMD Studio {__version__}")
        self.resize(1360, 860)
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self._closed = False
        self._error_box: QMessageBox | None = None
        self._errors_hidden = 0

        self.player_state = PlayerState()
        self.live_state = LiveState()
        self.model_state = ModelState()
        self.batch_state = BatchState()
        if cuda_available is not None:
            self.model_state.set_cuda_available(cuda_available)
        self.player_state.set_volume(float(self.settings.value("player/volume", 0.8)))
        self.player_state.set_loop(self.settings.value("player/loop", "false") in (True, "true"))

        self.player = PlayerController(self.player_state, self.live_state, self.model_state, use_audio_device)
        if cuda_available is None:  # torch is imported on the inference thread, not here
            self.player.inference.cuda_checked.connect(
                self.model_state.set_cuda_available, Qt.ConnectionType.QueuedConnection
            )
        self.batch = BatchController(self.batch_state, self.model_state)

        self.player_tab = PlayerTab(self.player_state, self.live_state, camera_devices())
        self.batch_tab = BatchTab(self.batch_state)
        self.training_tab = TrainingTab(self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.player_tab, "Player")
        self.tabs.addTab(self.batch_tab, "Batch")
        self.tabs.addTab(self.training_tab, "Training")
        self.setCentralWidget(self.tabs)
        self.model_manager = ModelManager(self.model_state, self)

        self._wire()
        self._build_menus()
        self._build_status_bar()
        self._restore_settings()
        self.player.start()

    # -- composition -------------------------------------------------------------------
    def _wire(self) -> None:
        p, pt, bt = self.player, self.player_tab, self.batch_tab
        p.frame_presented.connect(pt.show_frame)
        p.overlay_changed.connect(pt.video.set_overlay_lines)
        pt.video.resized.connect(p.set_display_size)
        p.set_display_size(pt.video.width(), pt.video.height())
        pt.open_file_requested.connect(self.open_file_dialog)
        pt.open_camera_requested.connect(p.open_camera)
        pt.transport.play_toggle_requested.connect(p.toggle_play)
        pt.transport.seek_requested.connect(p.seek)
        pt.transport.loop_requested.connect(p.set_loop)
        pt.transport.volume_requested.connect(p.set_volume)
        bt.paths_requested.connect(self.batch.add_paths)
        bt.cancel_requested.connect(lambda rows: [self.batch.cancel_item(r) for r in rows])
        bt.cancel_all_requested.connect(self.batch.cancel_all)
        bt.clear_requested.connect(self.batch.clear)
        bt.export_requested.connect(self._on_batch_export_requested)
        bt.open_requested.connect(self.open_in_player)
        bt.window_changed.connect(lambda w: setattr(self.batch, "window", w if w > 0 else None))
        bt.decode_timeout_changed.connect(self.set_decode_timeout)
        self.batch.message.connect(bt.show_message)
        self.batch.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        mm = self.model_manager
        mm.load_requested.connect(lambda folder: self.load_model(folder))
        mm.demo_requested.connect(lambda: self.load_model(str(demo_model_dir())))
        mm.device_requested.connect(self.set_device)
        self.player_state.error_changed.connect(self._on_error)
        self.model_state.error_changed.connect(self._on_error)
        self.training_tab.use_model_requested.connect(self.load_model)

    def _action(self, menu, text: str, shortcut, slot, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "&Open video…", QKeySequence.StandardKey.Open, self.open_file_dialog)
        self._action(
            f,
            "Open &webcam",
            "Ctrl+Shift+W",
            lambda: self.player.open_camera(self.player_tab.camera_box.currentText().strip()),
        )
        self._action(f, "Add files to &batch…", "Ctrl+B", self.batch_tab.add_files_dialog)
        self._action(f, "Add &folder to batch…", "Ctrl+Shift+B", self.batch_tab.add_folder_dialog)
        self._action(f, "&Export batch results…", "Ctrl+E", lambda: self.batch_tab.export_dialog("csv"))
        f.addSeparator()
        self._action(f, "Open &log folder", None, self._open_log_folder)
        f.addSeparator()
        self._action(f, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        pm = bar.addMenu("&Playback")
        self._action(pm, "&Play / pause", "Space", self.player.toggle_play)
        self._action(pm, "Back 5 s", "Left", lambda: self.player.seek(self.player_state.position - 5))
        self._action(pm, "Forward 5 s", "Right", lambda: self.player.seek(self.player_state.position + 5))
        self._action(pm, "Go to start", "Home", lambda: self.player.seek(0.0))
        self.loop_action = self._action(pm, "&Loop", "Ctrl+L", self.player.set_loop, checkable=True)
        self.player_state.loop_changed.connect(self.loop_action.setChecked)
        self.loop_action.setChecked(self.player_state.loop)
        self._action(
            pm, "Volume up", "Ctrl+Up", lambda: self.player.set_volume(self.player_state.volume + 0.1)
        )
        self._action(
            pm, "Volume down", "Ctrl+Down", lambda: self.player.set_volume(self.player_state.volume - 0.1)
        )
        self._action(pm, "Close source", "Ctrl+Shift+C", self.player.close_media)
        mm = bar.addMenu("&Model")
        self._action(mm, "Model &manager…", "Ctrl+M", self.show_model_manager)
        self._action(mm, "&Load model folder…", "Ctrl+Shift+M", self.model_manager.load_folder_dialog)
        self._action(
            mm, "Load &Kinetics-400 model (I3D + YAMNet)", None, lambda: self.load_model("kinetics400")
        )
        self._action(mm, "Load &demo model", None, lambda: self.load_model(str(demo_model_dir())))
        self._action(mm, "Use &CPU", None, lambda: self.set_device("cpu"))
        gpu = self._action(mm, "Use &GPU (CUDA)", None, lambda: self.set_device("cuda"))
        gpu.setEnabled(self.model_state.cuda_available)
        self.model_state.cuda_available_changed.connect(gpu.setEnabled)
        vm = bar.addMenu("&View")
        self.overlay_action = self._action(
            vm, "&Debug overlay (A/V drift)", "F3", self.player_tab.video.set_overlay_visible, checkable=True
        )
        for i, name in enumerate(("Player", "Batch", "Training")):
            self._action(
                vm, f"{name} tab", f"Ctrl+{i + 1}", lambda _=False, i=i: self.tabs.setCurrentIndex(i)
            )
        hm = bar.addMenu("&Help")
        self._action(hm, "&About IMD Studio", None, self._about)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.status_device = QLabel("device —")
        self.status_model = QLabel("model —")
        self.status_fps = QLabel("playback — fps")
        self.status_rate = QLabel("inference — /s")
        self.status_latency = QLabel("latency —")
        for w in (
            self.status_device,
            self.status_model,
            self.status_fps,
            self.status_rate,
            self.status_latency,
        ):
            sb.addPermanentWidget(w)
        self.model_state.info_changed.connect(self._on_model_info_changed)
        self.model_state.loading_changed.connect(
            lambda loading: (
                self.status_model.setText("model: loading…")
                if loading
                else self._on_model_info_changed(self.model_state.info)
            )
        )
        self.player_state.playback_fps_changed.connect(
            lambda fps: self.status_fps.setText(f"playback {fps:.1f} fps")
        )
        self.live_state.stats_changed.connect(self._on_live_stats_changed)

    def _on_model_info_changed(self, info: ModelInfo | None) -> None:
        if info is None:
            self.status_model.setText("model —")
            self.status_device.setText("device —")
            return
        self.status_model.setText(f"model {info.name} ({info.size}, {len(info.labels)} classes)")
        self.status_device.setText(f"device {info.device}")

    def _on_live_stats_changed(self, s: InferenceStats) -> None:
        self.status_rate.setText(f"inference {s.rate:.1f} /s")
        self.status_latency.setText(f"latency {s.latency * 1000:.0f} ms")

    # -- actions ---------------------------------------------------------------------
    def open_file_dialog(self) -> None:
        start = str(self.settings.value("paths/last_dir", ""))
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", start, VIDEO_FILTER)
        if path:
            self.open_in_player(path)

    def open_in_player(self, path: str, start: float = 0.0) -> None:
        self.settings.setValue("paths/last_dir", str(Path(path).parent))
        self.tabs.setCurrentWidget(self.player_tab)
        self.player.open_file(path, start)

    def load_model(self, folder: str, device: str | None = None) -> None:
        """Loads a model folder, or a model by name (``kinetics400``, ``demo``)."""
        spec = self.model_state.spec
        device = device or (spec.device if spec else str(self.settings.value("model/device", "cpu")))
        try:
            path = resolve_model_dir(folder)
        except ImdError as exc:
            self._on_error(str(exc))
            return
        self.player.load_model(ModelSpec(folder=path, device=device))  # type: ignore[arg-type]

    def set_device(self, device: str) -> None:
        if device == "cuda" and not self.model_state.cuda_available:
            self._on_error("no CUDA device on this machine; staying on the CPU")
            return
        spec = self.model_state.spec
        folder = spec.folder if spec else demo_model_dir()
        self.player.load_model(ModelSpec(folder=Path(folder), device=device))  # type: ignore[arg-type]

    def set_decode_timeout(self, seconds: float) -> None:
        """Bounds each decode of the batch (from its next run) and each open of the player."""
        self.batch.decode_timeout = float(seconds)
        self.player.set_decode_timeout(float(seconds))
        self.settings.setValue("decode/timeout", float(seconds))

    def show_model_manager(self) -> None:
        self.model_manager.show()
        self.model_manager.raise_()

    def start_up(self, path: str | None = None) -> None:
        """Loads the saved model (first launch: kinetics400 when installed, else the demo) and
        opens ``path``, or on first launch a demo clip, looping, so the first result is seen."""
        default = str(default_app_model_dir())
        folder = str(self.settings.value("model/folder", "")) or default
        try:
            if not resolve_model_dir(folder).is_dir():
                folder = default
        except ImdError:
            folder = default
        self.load_model(folder, str(self.settings.value("model/device", "cpu")))
        first_launch = self.settings.value("app/launched", "false") not in (True, "true")
        self.settings.setValue("app/launched", True)
        if path:
            self.open_in_player(path)
        elif first_launch and demo_clips():
            # the demo clip is shorter than a cold model load: loop it until results show
            self.player.set_loop(True)
            self.open_in_player(str(demo_clips()[0]))

    def _on_batch_export_requested(self, path: str) -> None:
        try:
            self.batch.export(path)
        except OSError as exc:
            self._on_error(f"cannot write {path}: {exc.strerror or exc}; choose another location")
            return
        self.statusBar().showMessage(f"exported {len(self.batch_state.rows)} result(s) to {path}", 8000)

    def _on_error(self, message: str) -> None:
        if not message:
            return
        self.statusBar().showMessage(message, 10000)
        # one dialog at a time: a burst of errors (four at once were seen) updates it
        box = self._error_box
        if box is not None and box.isVisible():
            self._errors_hidden += 1
            box.setText(message)
            box.setInformativeText(f"{self._errors_hidden} earlier message(s) replaced; all are in the log.")
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning, "IMD Studio", message, QMessageBox.StandardButton.Ok, self
        )
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.destroyed.connect(self._forget_error_box)
        self._error_box, self._errors_hidden = box, 0
        box.show()

    def _forget_error_box(self) -> None:
        self._error_box = None

    def _open_log_folder(self) -> None:
        from imd_app.user_data import user_data_dir

        QDesktopServices.openUrl(QUrl.fromLocalFile(str(user_data_dir() / "logs")))

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About IMD Studio",
            f"IMD Studio {__version__}\nAudio-visual action recognition with learnable irrelevant modality dropout.",
        )

    # -- drag and drop anywhere ----------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.handle_dropped_paths(paths)

    def handle_dropped_paths(self, paths: list[str]) -> None:
        """One file on the Player tab plays; anything else (or on the Batch tab) goes to the batch."""
        single_file = len(paths) == 1 and Path(paths[0]).is_file()
        if single_file and self.tabs.currentWidget() is not self.batch_tab:
            self.open_in_player(paths[0])
        else:
            self.tabs.setCurrentWidget(self.batch_tab)
            self.batch.add_paths(paths)

    # -- settings and shutdown -------------------------------------------------------
    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.tabs.setCurrentIndex(int(self.settings.value("window/tab", 0)))
        overlay = self.settings.value("view/overlay", "false") in (True, "true")
        self.overlay_action.setChecked(overlay)
        self.player_tab.video.set_overlay_visible(overlay)
        try:
            timeout = float(self.settings.value("decode/timeout", DEFAULT_DECODE_TIMEOUT))
        except (TypeError, ValueError):
            timeout = DEFAULT_DECODE_TIMEOUT
        box = self.batch_tab.timeout_box
        timeout = min(max(timeout, box.minimum()), box.maximum())
        box.setValue(int(round(timeout)))
        self.set_decode_timeout(float(box.value()))

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/tab", self.tabs.currentIndex())
        s.setValue("player/volume", self.player_state.volume)
        s.setValue("player/loop", self.player_state.loop)
        s.setValue("view/overlay", self.overlay_action.isChecked())
        spec = self.model_state.spec
        if spec is not None and self.model_state.info is not None:
            s.setValue("model/folder", str(spec.folder))
            s.setValue("model/device", spec.device)
        s.sync()

    def shutdown(self) -> None:
        """Save settings and stop/join every worker (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._save_settings()
        self.player.shutdown()
        self.batch.shutdown()
        self.training_tab.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
