"""The Player tab: video, transport, source picker and the live IMD panel side by side."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from imd_app.state import LiveState, PlayerState
from imd_app.widgets.elided_label import ElidedLabel
from imd_app.widgets.live_panel import LivePanel
from imd_app.widgets.transport_bar import TransportBar
from imd_app.widgets.video_view import VideoView


class PlayerTab(QWidget):
    open_file_requested = Signal()
    open_camera_requested = Signal(str)

    def __init__(
        self, player: PlayerState, live: LiveState, cameras: list[str], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._player = player
        self.video = VideoView()
        self.transport = TransportBar(player)
        self.live_panel = LivePanel(live, player)
        open_button = QPushButton("Open file…")
        open_button.clicked.connect(self.open_file_requested)
        self.camera_box = QComboBox()
        self.camera_box.setEditable(True)
        self.camera_box.setToolTip("Camera: a device index or path")
        self.camera_box.addItems(cameras or ["0"])
        camera_button = QPushButton("Open webcam")
        camera_button.clicked.connect(
            lambda: self.open_camera_requested.emit(self.camera_box.currentText().strip())
        )
        self.source_label = ElidedLabel(
            "No source", hint_chars=60
        )  # a long path must not squeeze the live panel
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(open_button)
        top.addWidget(QLabel("Camera"))
        top.addWidget(self.camera_box)
        top.addWidget(camera_button)
        top.addWidget(self.source_label, 1)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addLayout(top)
        ll.addWidget(self.video, 1)
        ll.addWidget(self.transport)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.live_panel)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)
        player.media_changed.connect(self._on_player_media_changed)
        player.audio_notice_changed.connect(self._on_player_notice_changed)
        player.error_changed.connect(self._on_player_notice_changed)
        self._on_player_notice_changed()

    def show_frame(self, image: QImage) -> None:
        self.video.set_image(image)

    def _on_player_media_changed(self, media) -> None:
        if media is None:
            self.source_label.setText("No source")
            self.video.set_image(None)
            return
        audio = "with audio" if media.has_audio else "no audio track"
        if media.kind == "webcam":
            audio = "microphone"
        size = f"{media.width}x{media.height}" if media.width else ""
        self.source_label.setText(f"{media.source}  ·  {size} {media.fps:.1f} fps  ·  {audio}")

    def _on_player_notice_changed(self, *_args) -> None:
        parts = [p for p in (self._player.error, self._player.audio_notice) if p]
        self.video.set_notice("  ·  ".join(parts))
