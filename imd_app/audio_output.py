"""Audio output and the media clock: the position of the audio being heard.

``AudioOutput`` plays an :class:`AudioRing` through a sounddevice callback; the samples
handed to the device minus its latency *are* the media position, and the GUI shows the
frame due then. Without a sound device a :class:`WallClock` stands in. Plain Python and
numpy, no Qt: the callback runs on PortAudio's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from imd_core.errors import DeviceError

log = logging.getLogger(__name__)


class AudioRing:
    """A bounded FIFO of mono samples with the media time of its first sample.

    The decode thread writes, the audio callback (or the muted pump) reads. ``eof``
    says the writer has no more samples: the reader then pads with silence so the clock
    keeps running to the end of the video.
    """

    def __init__(self, sample_rate: int, max_seconds: float = 4.0) -> None:
        self.sample_rate = int(sample_rate)
        self.capacity = int(max_seconds * sample_rate)
        self._lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()
        self._size = 0
        self._read_time = 0.0  # media time of the next sample to be read
        self.eof = False

    def reset(self, start_time: float) -> None:
        with self._lock:
            self._chunks.clear()
            self._size = 0
            self._read_time = float(start_time)
            self.eof = False

    def space(self) -> int:
        with self._lock:
            return self.capacity - self._size

    def available(self) -> int:
        with self._lock:
            return self._size

    def write(self, samples: np.ndarray) -> int:
        """Appends as many samples as fit; returns how many were taken."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            n = min(len(samples), self.capacity - self._size)
            if n > 0:
                self._chunks.append(samples[:n].copy())
                self._size += n
            return n

    def read(self, n: int) -> tuple[float, np.ndarray]:
        """Takes up to ``n`` samples (fewer on underrun, silence after ``eof``).

        Returns:
            (media time of the first sample, float32 (M,) samples with M <= n).
        """
        with self._lock:
            start = self._read_time
            parts: list[np.ndarray] = []
            need = n
            while need > 0 and self._chunks:
                head = self._chunks[0]
                if len(head) <= need:
                    parts.append(head)
                    self._chunks.popleft()
                    need -= len(head)
                else:
                    parts.append(head[:need])
                    self._chunks[0] = head[need:]
                    need = 0
            got = n - need
            self._size -= got
            out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            if need > 0 and self.eof:
                out = np.concatenate([out, np.zeros(need, np.float32)])
            self._read_time += len(out) / self.sample_rate
            return start, out

    @property
    def read_time(self) -> float:
        with self._lock:
            return self._read_time


class WallClock:
    """Media position from the monotonic clock, for muted playback and live sources."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._anchor_media = 0.0
        self._anchor_wall = time.monotonic()
        self._running = False

    def position(self) -> float:
        with self._lock:
            if not self._running:
                return self._anchor_media
            return self._anchor_media + (time.monotonic() - self._anchor_wall)

    def set_running(self, running: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if self._running:
                self._anchor_media += now - self._anchor_wall
            self._anchor_wall = now
            self._running = running

    def seek(self, media_time: float) -> None:
        with self._lock:
            self._anchor_media = float(media_time)
            self._anchor_wall = time.monotonic()


HeardCallback = Callable[[float, np.ndarray], None]


class AudioOutput:
    """Plays an :class:`AudioRing` and exposes the media clock.

    Args:
        ring: where samples come from.
        on_heard: called with (media time, samples) for every block played (or pumped
            when muted); it must be cheap and thread-safe (it runs on the audio thread).
        use_device: try to open a sound device; ``False`` forces muted playback.

    ``notice`` is empty when sound plays, otherwise why playback is muted.
    """

    def __init__(
        self, ring: AudioRing, on_heard: HeardCallback | None = None, use_device: bool = True
    ) -> None:
        self.ring = ring
        self._on_heard = on_heard
        self._wall = WallClock()
        self._lock = threading.Lock()
        self._stream = None
        self._running = False
        self._volume = 0.8
        self._played_media = 0.0  # media time just after the last block handed to the device
        self._latency = 0.0
        self.notice = ""
        if use_device:
            try:
                self._open_stream()
            except DeviceError as exc:
                self.notice = str(exc)
                log.warning("muted playback: %s", exc)
        else:
            self.notice = "muted: sound output disabled"

    @property
    def has_device(self) -> bool:
        return self._stream is not None

    def _open_stream(self) -> None:
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:  # OSError: PortAudio library missing
            raise DeviceError(f"no sound output ({exc}); install libportaudio2 to hear audio") from exc
        try:
            self._stream = sd.OutputStream(
                samplerate=self.ring.sample_rate,
                channels=1,
                dtype="float32",
                callback=self._callback,
                latency="low",
            )
            self._latency = float(self._stream.latency)
        except Exception as exc:  # PortAudioError and friends: any failure means muted
            self._stream = None
            raise DeviceError(f"no sound device could be opened ({exc}); playing muted") from exc

    # -- audio thread --------------------------------------------------------------
    def _callback(self, outdata, frames, time_info, status) -> None:  # noqa: ARG002
        with self._lock:
            running, volume = self._running, self._volume
        if not running:
            outdata.fill(0)
            return
        start, samples = self.ring.read(frames)
        outdata[: len(samples), 0] = samples * volume
        outdata[len(samples) :].fill(0)
        if len(samples):
            with self._lock:
                self._played_media = start + len(samples) / self.ring.sample_rate
            if self._on_heard is not None:
                self._on_heard(start, samples)

    # -- any thread ----------------------------------------------------------------
    def position(self) -> float:
        """The media time being heard now (seconds)."""
        if self._stream is None:
            return self._wall.position()
        with self._lock:
            return max(0.0, self._played_media - self._latency) if self._played_media else self._played_media

    def pump(self) -> None:
        """Muted mode: move samples up to the wall-clock position out of the ring as "heard"."""
        if self._stream is not None:
            return
        due = self._wall.position() - self.ring.read_time
        n = int(due * self.ring.sample_rate)
        if n <= 0:
            return
        start, samples = self.ring.read(n)
        if len(samples) and self._on_heard is not None:
            self._on_heard(start, samples)

    def set_volume(self, volume: float) -> None:
        with self._lock:
            self._volume = float(volume)

    def set_running(self, running: bool) -> None:
        with self._lock:
            self._running = running
        self._wall.set_running(running and not self._buffering)

    _buffering = False

    def set_buffering(self, buffering: bool) -> None:
        """Muted mode: hold the wall clock while the decoder has nothing ready (a device holds by itself)."""
        if buffering != self._buffering:
            self._buffering = buffering
            with self._lock:
                running = self._running
            self._wall.set_running(running and not buffering)
        if self._stream is not None:
            if running and not self._stream.active:
                self._stream.start()

    def seek(self, media_time: float) -> None:
        """Restart the clock at ``media_time`` (the ring is reset by its writer)."""
        with self._lock:
            self._played_media = float(media_time) + self._latency
        self._wall.seek(media_time)

    def close(self) -> None:
        with self._lock:
            self._running = False
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # a vanished device must not block closing
                log.exception("closing the sound stream failed")
            self._stream = None
