"""What the player is doing: source, transport, audio output status, playback statistics."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from imd_app.types import MediaOpened


class PlayerState(QObject):
    """Player state on the GUI thread; each setter emits its signal only on change."""

    media_changed = Signal(object)  # MediaOpened | None
    playing_changed = Signal(bool)
    position_changed = Signal(float)  # seconds on the media timeline
    loop_changed = Signal(bool)
    volume_changed = Signal(float)  # 0..1
    audio_notice_changed = Signal(str)  # "" when audio plays; otherwise why it is muted
    playback_fps_changed = Signal(float)
    drift_changed = Signal(float)  # presented frame time minus audio clock, milliseconds
    error_changed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self._media: MediaOpened | None = None
        self._playing = False
        self._position = 0.0
        self._loop = False
        self._volume = 0.8
        self._audio_notice = ""
        self._playback_fps = 0.0
        self._drift_ms = 0.0
        self._error = ""

    @property
    def media(self) -> MediaOpened | None:
        return self._media

    def set_media(self, media: MediaOpened | None) -> None:
        if media != self._media:
            self._media = media
            self.media_changed.emit(media)

    @property
    def duration(self) -> float:
        return self._media.duration if self._media else 0.0

    @property
    def is_live(self) -> bool:
        return self._media is not None and self._media.kind == "webcam"

    @property
    def playing(self) -> bool:
        return self._playing

    def set_playing(self, playing: bool) -> None:
        if playing != self._playing:
            self._playing = playing
            self.playing_changed.emit(playing)

    @property
    def position(self) -> float:
        return self._position

    def set_position(self, seconds: float) -> None:
        if abs(seconds - self._position) > 1e-6:
            self._position = seconds
            self.position_changed.emit(seconds)

    @property
    def loop(self) -> bool:
        return self._loop

    def set_loop(self, loop: bool) -> None:
        if loop != self._loop:
            self._loop = loop
            self.loop_changed.emit(loop)

    @property
    def volume(self) -> float:
        return self._volume

    def set_volume(self, volume: float) -> None:
        volume = min(max(float(volume), 0.0), 1.0)
        if abs(volume - self._volume) > 1e-6:
            self._volume = volume
            self.volume_changed.emit(volume)

    @property
    def audio_notice(self) -> str:
        return self._audio_notice

    def set_audio_notice(self, notice: str) -> None:
        if notice != self._audio_notice:
            self._audio_notice = notice
            self.audio_notice_changed.emit(notice)

    @property
    def playback_fps(self) -> float:
        return self._playback_fps

    def set_playback_fps(self, fps: float) -> None:
        if abs(fps - self._playback_fps) > 0.05:
            self._playback_fps = fps
            self.playback_fps_changed.emit(fps)

    @property
    def drift_ms(self) -> float:
        return self._drift_ms

    def set_drift_ms(self, drift: float) -> None:
        if abs(drift - self._drift_ms) > 0.05:
            self._drift_ms = drift
            self.drift_changed.emit(drift)

    @property
    def error(self) -> str:
        return self._error

    def set_error(self, error: str) -> None:
        if error != self._error:
            self._error = error
            self.error_changed.emit(error)
