"""Owns the player's pipeline: decode thread, inference thread, audio output, presenter.

The presenter (a GUI timer) shows the frame due at the audio clock and hands that same
frame, and the output each played audio block, to the inference worker: the model sees
what is shown and hears what is heard (threads: docs/ARCHITECTURE.md). ``shutdown``
stops and joins every thread; it is idempotent.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QImage

from imd_app.audio_output import AudioOutput, AudioRing
from imd_app.frame_queue import FrameQueue
from imd_app.media_reader import MicrophoneFeed, open_microphone, output_sample_rate
from imd_app.state import LiveState, ModelState, PlayerState
from imd_app.types import MediaOpened, ModelSpec
from imd_app.workers.decode_worker import DecodeWorker
from imd_app.workers.inference_worker import InferenceWorker
from imd_core.errors import ImdError

log = logging.getLogger(__name__)

PRESENT_INTERVAL_MS = 8


class PlayerController(QObject):
    frame_presented = Signal(QImage)
    overlay_changed = Signal(list)  # debug overlay lines

    def __init__(
        self, player: PlayerState, live: LiveState, model: ModelState, use_audio_device: bool = True
    ) -> None:
        super().__init__()
        self.player, self.live, self.model = player, live, model
        rate = output_sample_rate() if use_audio_device else 16000
        self.ring = AudioRing(rate)
        self.frames = FrameQueue()
        self._forward_audio = False
        self.audio = AudioOutput(self.ring, on_heard=self._on_audio_heard, use_device=use_audio_device)
        self.audio.set_volume(player.volume)
        player.set_audio_notice(self.audio.notice)
        self._mic: MicrophoneFeed | None = None
        self._source = ""
        self._pending_start = 0.0
        self._pending_play = False
        self._ended = False
        self._preview_at: float | None = None
        self._present_times: deque[float] = deque(maxlen=120)
        self._drifts: deque[float] = deque(maxlen=60)
        self.frames_dropped = 0
        self.frames_presented = 0
        self.frames_presented_since_reset = 0  # what the inference worker must have received
        self._last_stats = 0.0
        self._closed = False

        self.decode_thread = QThread()
        self.decode_thread.setObjectName("imd-decode")
        self.decoder = DecodeWorker(self.frames, self.ring)
        self.decoder.moveToThread(self.decode_thread)
        self.decode_thread.started.connect(self.decoder.run)
        self.decoder.finished.connect(self.decode_thread.quit, Qt.ConnectionType.DirectConnection)
        self.decoder.opened.connect(self._on_decoder_opened, Qt.ConnectionType.QueuedConnection)
        self.decoder.failed.connect(self._on_decoder_failed, Qt.ConnectionType.QueuedConnection)

        self.infer_thread = QThread()
        self.infer_thread.setObjectName("imd-inference")
        self.inference = InferenceWorker()
        self.inference.moveToThread(self.infer_thread)
        self.infer_thread.started.connect(self.inference.run)
        self.inference.finished.connect(self.infer_thread.quit, Qt.ConnectionType.DirectConnection)
        q = Qt.ConnectionType.QueuedConnection
        self.inference.result_ready.connect(live.add_result, q)
        self.inference.spectrogram_ready.connect(live.append_spectrogram, q)
        self.inference.stats_changed.connect(live.set_stats, q)
        self.inference.model_loaded.connect(self._on_inference_model_loaded, q)
        self.inference.model_failed.connect(self._on_inference_model_failed, q)
        self.inference.loading_changed.connect(model.set_loading, q)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PRESENT_INTERVAL_MS)
        self.timer.timeout.connect(self._on_timer_timeout)

        player.volume_changed.connect(self.audio.set_volume)

    def start(self) -> None:
        self.decode_thread.start()
        self.infer_thread.start()
        self.timer.start()

    # -- requests ------------------------------------------------------------------
    def load_model(self, spec: ModelSpec) -> None:
        self.model.set_spec(spec)
        self.model.set_error("")
        self.inference.request_model(spec)

    def open_file(self, path: str, start: float = 0.0, play: bool = True) -> None:
        self._stop_microphone()
        self.audio.set_running(False)
        self.player.set_playing(False)
        self.player.set_error("")
        self._pending_start, self._pending_play = float(start), play
        self.decoder.request_open_file(str(path), start)

    def open_camera(self, device: str) -> None:
        self.audio.set_running(False)
        self.player.set_playing(False)
        self.player.set_error("")
        self._pending_start, self._pending_play = 0.0, True
        self.decoder.request_open_camera(str(device))

    def close_media(self) -> None:
        self._stop_microphone()
        self.audio.set_running(False)
        self.decoder.request_close()
        self.player.set_playing(False)
        self.player.set_media(None)
        self.live.clear()

    def play(self) -> None:
        media = self.player.media
        if media is None:
            return
        if self._ended and media.kind == "file":
            self.seek(0.0)
        self._ended = False
        self._preview_at = None
        self.audio.set_running(True)
        self.player.set_playing(True)

    def pause(self) -> None:
        self.audio.set_running(False)
        self.player.set_playing(False)

    def toggle_play(self) -> None:
        self.pause() if self.player.playing else self.play()

    def seek(self, seconds: float) -> None:
        media = self.player.media
        if media is None or media.kind != "file":
            return
        seconds = min(max(0.0, seconds), max(0.0, media.duration - 0.05))
        self._ended = False
        # Refuse what the decoder still has in flight for the old position at once.
        self.frames.new_generation()
        self.ring.reset(seconds)
        if not media.has_audio:
            self.ring.eof = True
        self.decoder.request_seek(seconds)
        # The decoder resets the ring when it takes the request; the clock restarts now.
        self.audio.seek(seconds)
        self.inference.request_reset(self._source, seconds, media.duration, media.fps)
        self.frames_presented_since_reset = 0
        self.player.set_position(seconds)
        self._preview_at = None if self.player.playing else seconds

    def set_decode_timeout(self, seconds: float) -> None:
        """Seconds a file's probe (in a sandbox process), or a wait for its next frame, may take
        before it fails."""
        self.decoder.decode_timeout = float(seconds)

    def set_display_size(self, width: int, height: int) -> None:
        self.decoder.display_size = (int(width), int(height))

    def set_loop(self, loop: bool) -> None:
        self.player.set_loop(loop)

    def set_volume(self, volume: float) -> None:
        self.player.set_volume(volume)

    # -- worker signals ------------------------------------------------------------
    def _on_decoder_opened(self, info: MediaOpened) -> None:
        self._source = info.source
        self._forward_audio = info.has_audio and info.kind == "file"
        self.live.clear()
        self.player.set_media(info)
        self.player.set_position(self._pending_start)
        self.audio.seek(self._pending_start)
        self.inference.request_reset(info.source, self._pending_start, info.duration, info.fps)
        self.frames_presented_since_reset = 0
        self._ended = False
        if info.kind == "webcam":
            self._start_microphone()
        if self._pending_play:
            self.play()

    def _on_decoder_failed(self, message: str) -> None:
        self.pause()
        self.player.set_error(message)

    def _on_inference_model_loaded(self, info) -> None:
        self.model.set_info(info)
        self.model.set_error("")
        self.live.set_model(info.labels, info.relevance_threshold)

    def _on_inference_model_failed(self, message: str) -> None:
        self.model.set_error(message)

    # -- audio thread --------------------------------------------------------------
    def _on_audio_heard(self, media_time: float, samples) -> None:
        if self._forward_audio:
            self.inference.submit_audio(media_time, samples, self.ring.sample_rate)

    # -- microphone (webcam mode) ----------------------------------------------------
    def _start_microphone(self) -> None:
        try:
            self._mic = open_microphone(self._on_microphone_block)
        except ImdError as exc:
            self._mic = None
            self.player.set_audio_notice(f"webcam without sound: {exc}")
        else:
            self.player.set_audio_notice("recording the microphone (not played back)")

    def _on_microphone_block(self, media_time: float, samples, sample_rate: int) -> None:
        self.inference.submit_audio(media_time, samples, sample_rate)

    def _stop_microphone(self) -> None:
        if self._mic is not None:
            self._mic.close()
            self._mic = None
            self.player.set_audio_notice(self.audio.notice)

    # -- presenter (GUI thread, every few ms) ----------------------------------------
    def _on_timer_timeout(self) -> None:
        media = self.player.media
        if media is None:
            return
        if not self.player.playing:
            self._show_preview()
            return
        if media.kind == "webcam":
            frame, dropped = self.frames.take_newest()
            position = frame.time if frame is not None else self.player.position
        else:
            self._update_buffering(media)
            self.audio.pump()
            position = self.audio.position()
            # Half a tick early: on average a frame then appears at its time, not half a tick late.
            frame, dropped = self.frames.take_due(position + PRESENT_INTERVAL_MS / 2000.0)
        self.frames_dropped += dropped
        now = time.monotonic()
        if frame is not None:
            self.frames_presented += 1
            self.frames_presented_since_reset += 1
            self._present_times.append(now)
            if media.kind == "file":
                self._drifts.append((frame.time - position) * 1000.0)
            self.frame_presented.emit(frame.image)
            self.inference.submit_frame(frame.time, frame.rgb)
            self.player.set_position(position)
        elif media.kind == "file" and abs(position - self.player.position) > 0.1:
            self.player.set_position(position)
        if media.kind == "file" and self.frames.exhausted and position >= media.duration - 0.05:
            self._on_end_of_media()
        if now - self._last_stats > 0.5:
            self._last_stats = now
            self._publish_stats()

    def _show_preview(self) -> None:
        """After a seek while paused: show the first frame at the new position once decoded."""
        if self._preview_at is None:
            return
        frame, _ = self.frames.take_due(self._preview_at + 1e-3)
        if frame is None:
            frame, _ = self.frames.take_due(self._preview_at + 1.0 / max(self.player.media.fps, 1.0))
        if frame is not None:
            self._preview_at = None
            self.frames_presented += 1
            self.frames_presented_since_reset += 1
            self.frame_presented.emit(frame.image)
            self.inference.submit_frame(frame.time, frame.rgb)

    def _update_buffering(self, media: MediaOpened) -> None:
        """Hold the muted clock while the decoder is behind (as a sound device would, on underrun)."""
        if self.audio.has_device:
            return
        no_frames = len(self.frames) == 0 and not self.frames.end_of_stream
        no_audio = media.has_audio and self.ring.available() == 0 and not self.ring.eof
        self.audio.set_buffering(no_frames or no_audio)

    def _on_end_of_media(self) -> None:
        if self.player.loop:
            self.seek(0.0)
        else:
            self._ended = True
            self.pause()

    def _publish_stats(self) -> None:
        times = self._present_times
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0
        if times and time.monotonic() - times[-1] > 1.0:
            fps = 0.0
        self.player.set_playback_fps(fps)
        drift = sum(self._drifts) / len(self._drifts) if self._drifts else 0.0
        worst = max((abs(d) for d in self._drifts), default=0.0)
        self.player.set_drift_ms(drift)
        media = self.player.media
        lines = [
            f"clock {'audio device' if self.audio.has_device else 'wall (muted)'}: {self.audio.position():.3f} s",
            f"A/V drift {drift:+.1f} ms (worst {worst:.1f} ms)",
            f"playback {fps:.1f} fps of {media.fps:.1f}" if media else "playback —",
            f"frames shown {self.frames_presented}, dropped {self.frames_dropped}",
            f"queued: {len(self.frames)} frames, {self.ring.available() / self.ring.sample_rate:.2f} s audio",
            f"inference input dropped: {self.inference.frames_dropped} frames",
        ]
        self.overlay_changed.emit(lines)

    # -- shutdown ------------------------------------------------------------------
    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop the timer, the sources and both workers, and join their threads."""
        if self._closed:
            return
        self._closed = True
        self.timer.stop()
        self._stop_microphone()
        self.audio.close()
        self.decoder.stop()
        self.inference.stop()
        for thread in (self.decode_thread, self.infer_thread):
            thread.quit()
            if thread.isRunning() and not thread.wait(timeout_ms):
                log.error("thread %s did not stop within %d ms", thread.objectName(), timeout_ms)
