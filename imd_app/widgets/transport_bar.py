"""Play/pause, seek slider, time, loop and volume. Emits requests; shows PlayerState."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QStyle, QToolButton, QWidget

from imd_app.state import PlayerState


def format_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}.{int((seconds - int(seconds)) * 10)}"


class TransportBar(QWidget):
    play_toggle_requested = Signal()
    seek_requested = Signal(float)
    loop_requested = Signal(bool)
    volume_requested = Signal(float)

    def __init__(self, state: PlayerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self._dragging = False
        self.play_button = QToolButton()
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.clicked.connect(self.play_toggle_requested)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Seek")
        self.slider.sliderPressed.connect(self._on_slider_pressed)
        self.slider.sliderReleased.connect(self._on_slider_released)
        self.slider.actionTriggered.connect(self._on_slider_action)
        self.time_label = QLabel("0:00.0 / 0:00.0")
        self.loop_box = QCheckBox("Loop")
        self.loop_box.toggled.connect(self.loop_requested)
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setRange(0, 100)
        self.volume.setFixedWidth(100)
        self.volume.setToolTip("Volume")
        self.volume.valueChanged.connect(lambda v: self.volume_requested.emit(v / 100.0))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.play_button)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.time_label)
        layout.addWidget(self.loop_box)
        layout.addWidget(QLabel("Vol"))
        layout.addWidget(self.volume)
        state.playing_changed.connect(self._on_state_playing_changed)
        state.position_changed.connect(self._on_state_position_changed)
        state.media_changed.connect(self._on_state_media_changed)
        state.loop_changed.connect(self.loop_box.setChecked)
        state.volume_changed.connect(lambda v: self.volume.setValue(round(v * 100)))
        self.volume.setValue(round(state.volume * 100))
        self.loop_box.setChecked(state.loop)
        self._on_state_playing_changed(state.playing)
        self._on_state_media_changed(state.media)

    def _on_state_playing_changed(self, playing: bool) -> None:
        icon = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))

    def _on_state_media_changed(self, media) -> None:
        seekable = media is not None and media.kind == "file" and media.duration > 0
        self.slider.setEnabled(seekable)
        self.slider.setRange(0, int(media.duration * 1000) if seekable else 0)
        self.loop_box.setEnabled(seekable)
        self.play_button.setEnabled(media is not None)
        self._on_state_position_changed(self._state.position)

    def _on_state_position_changed(self, position: float) -> None:
        if not self._dragging:
            self.slider.blockSignals(True)
            self.slider.setValue(int(position * 1000))
            self.slider.blockSignals(False)
        duration = self._state.duration
        total = format_time(duration) if duration > 0 else "live"
        self.time_label.setText(f"{format_time(position)} / {total}")

    def _on_slider_pressed(self) -> None:
        self._dragging = True

    def _on_slider_released(self) -> None:
        self._dragging = False
        self.seek_requested.emit(self.slider.value() / 1000.0)

    def _on_slider_action(self, action: int) -> None:
        # Clicks on the groove and keyboard steps (not drags) seek at once.
        if not self._dragging and action != QSlider.SliderAction.SliderMove:
            self.seek_requested.emit(self.slider.sliderPosition() / 1000.0)
