"""Live sources: a webcam (OpenCV), a microphone (sounddevice) and file playback.

Every frame and audio block carries ``time``, when it was captured, in seconds on one
monotonic clock, so sources on different devices line up. Each source owns at most one
capture thread or PortAudio callback, started by ``start()`` and joined by ``stop()``.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from imd_core.errors import DecodeError, DeviceError

if TYPE_CHECKING:
    from imd_core.media.probe import MediaInfo

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class VideoFrame:
    """One frame: ``frame`` uint8 (H, W, 3) RGB, ``time`` on the source's clock."""

    frame: np.ndarray
    time: float
    index: int
    media_time: float | None = None  # position in the file (FilePlayback only)

    @property
    def timestamp(self) -> float:
        return self.time


@dataclass(frozen=True)
class AudioBlock:
    """Audio ``samples`` float32 (N,) mono (or (N, C)), ``time`` of the first sample."""

    samples: np.ndarray
    time: float
    sample_rate: int
    media_time: float | None = None

    @property
    def timestamp(self) -> float:
        return self.time

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class WebcamSource:
    """Frames from a camera (device index) or anything OpenCV opens (a path, a URL).

    A capture thread reads continuously; :meth:`read` returns the newest frame (older
    unread frames are dropped, so a slow consumer sees fresh frames, not a backlog).

    Args:
        device: camera index (``0``), ``/dev/videoN``, or a file path / URL.
        width, height, fps: requested capture format (the camera may ignore it).
        clock: time source of the frame timestamps.
    """

    def __init__(
        self,
        device: int | str = 0,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.device, self.clock = device, clock
        self._request = (width, height, fps)
        self._cap = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._latest: VideoFrame | None = None
        self._delivered = -1
        self._ended = False
        self.frame_size: tuple[int, int] = (0, 0)  # (height, width)
        self.fps: float = 0.0

    def start(self) -> WebcamSource:
        """Opens the device and starts capturing.

        Raises:
            DeviceError: the camera does not exist, is busy, or gives no frame.
        """
        import cv2

        if self._thread is not None:
            return self
        dev = self.device
        if isinstance(dev, str) and dev.isdigit():
            dev = int(dev)
        if isinstance(dev, str) and not os.path.exists(dev) and "://" not in dev:
            raise DeviceError(f"camera {dev!r} not found; check the device path or pick another camera")
        cap = cv2.VideoCapture(dev)
        if not cap.isOpened():
            cap.release()
            raise DeviceError(
                f"cannot open camera {self.device!r}; is it connected and not used by another program?"
            )
        w, h, fps = self._request
        if w:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
        if h:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise DeviceError(f"camera {self.device!r} opened but gives no frames; try another camera")
        self._cap = cap
        self.frame_size = (first.shape[0], first.shape[1])
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._publish(first, 0)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"webcam-{self.device}", daemon=True)
        self._thread.start()
        return self

    def _publish(self, bgr: np.ndarray, index: int) -> None:
        import cv2

        frame = VideoFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.clock(), index)
        with self._cond:
            self._latest = frame
            self._cond.notify_all()

    def _run(self) -> None:
        index = 1
        while not self._stop.is_set():
            ok, bgr = self._cap.read()
            if not ok:
                break  # unplugged, or the end of a file
            self._publish(bgr, index)
            index += 1
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def read(self, timeout: float | None = 1.0) -> VideoFrame | None:
        """The newest frame not yet returned; ``None`` after ``timeout`` or at the end."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (self._latest is not None and self._latest.index > self._delivered) or self._ended,
                timeout=timeout,
            )
            if not ok or self._latest is None or self._latest.index <= self._delivered:
                return None
            self._delivered = self._latest.index
            return self._latest

    def __iter__(self) -> Iterator[VideoFrame]:
        while (frame := self.read(timeout=5.0)) is not None:
            yield frame

    def stop(self) -> None:
        """Stops capturing and releases the camera (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> WebcamSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class MicrophoneSource:
    """Audio from an input device through a sounddevice callback into a ring buffer.

    Args:
        device: sounddevice input device (index or name); ``None`` = the default.
        sample_rate: capture rate (16 kHz suits the model).
        channels: capture channels; blocks are down-mixed to mono unless ``mono=False``.
        block_seconds: size of each callback block.
        buffer_seconds: ring buffer length (:meth:`latest` reads from it).
        callback: called with every :class:`AudioBlock` (on PortAudio's thread).
        clock: time source of the block timestamps.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        sample_rate: int = 16000,
        channels: int = 1,
        block_seconds: float = 0.1,
        buffer_seconds: float = 30.0,
        mono: bool = True,
        callback: Callable[[AudioBlock], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.device, self.sample_rate, self.channels = device, int(sample_rate), int(channels)
        self.block = max(1, int(round(block_seconds * sample_rate)))
        self.mono, self.callback, self.clock = mono, callback, clock
        width = 1 if mono else self.channels
        self._ring = np.zeros((int(buffer_seconds * sample_rate), width), np.float32)
        self._written = 0  # samples ever written
        self._t_first: float | None = None  # clock time of sample 0
        self._lock = threading.Lock()
        self._stream = None
        self.overflows = 0

    def start(self) -> MicrophoneSource:
        """Opens the input device and starts recording.

        Raises:
            DeviceError: no PortAudio library, no input device, or it cannot be opened.
        """
        if self._stream is not None:
            return self
        try:
            import sounddevice as sd
        except (OSError, ImportError) as exc:  # libportaudio or sounddevice missing
            raise DeviceError(f"sound is unavailable: {exc}; install libportaudio2 and sounddevice") from None
        try:
            sd.check_input_settings(device=self.device, channels=self.channels, samplerate=self.sample_rate)
            stream = sd.InputStream(
                device=self.device,
                channels=self.channels,
                samplerate=self.sample_rate,
                blocksize=self.block,
                dtype="float32",
                callback=self._on_audio,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(
                f"cannot open the microphone ({exc}); connect one or pick another input"
            ) from None
        self._stream = stream
        return self

    def _on_audio(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio callback: timestamp the block, store it, pass it on."""
        now = self.clock()
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        try:  # ADC time of the first sample, moved onto our clock
            lag = float(time_info.currentTime - time_info.inputBufferAdcTime)
            if not 0.0 <= lag < 1.0:
                raise ValueError
        except (AttributeError, TypeError, ValueError):
            lag = frames / self.sample_rate  # the block just finished recording
        t = now - lag
        data = np.asarray(indata, np.float32).reshape(frames, -1)
        samples = data.mean(axis=1, keepdims=True) if self.mono else data
        n, cap = len(samples), len(self._ring)
        with self._lock:
            if self._t_first is None:
                self._t_first = t
            pos = self._written % cap
            first = min(n, cap - pos)
            self._ring[pos : pos + first] = samples[:first]
            self._ring[: n - first] = samples[first:]
            self._written += n
        if self.callback is not None:
            self.callback(
                AudioBlock(samples[:, 0].copy() if self.mono else samples.copy(), t, self.sample_rate)
            )

    def latest(self, seconds: float) -> AudioBlock | None:
        """The most recent ``seconds`` of audio (fewer if not recorded yet), or ``None``."""
        with self._lock:
            if self._written == 0 or self._t_first is None:
                return None
            cap = len(self._ring)
            n = min(int(round(seconds * self.sample_rate)), self._written, cap)
            end = self._written % cap
            idx = (np.arange(end - n, end)) % cap
            out = self._ring[idx].copy()
            # Time of the first returned sample, assuming a steady sample clock.
            t = self._t_first + (self._written - n) / self.sample_rate
        return AudioBlock(out[:, 0] if self.mono else out, t, self.sample_rate)

    def stop(self) -> None:
        """Stops recording and closes the device (idempotent)."""
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None

    def __enter__(self) -> MicrophoneSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FilePlayback:
    """A file as one time-ordered stream of :class:`VideoFrame` and :class:`AudioBlock`.

    One demux pass over the video and audio streams (no re-decoding); audio becomes
    mono ``sample_rate`` blocks of ``block_seconds``. Each item's ``time`` is
    ``t0 + (media_time - start)`` where ``t0`` is the clock when iteration began; with
    ``realtime=True`` iteration waits until that time, like a player.

    Args:
        path: the media file.
        info: its :func:`~imd_core.media.probe.probe` when the caller has it (the player
            probes in a sandbox first): ``None`` probes here.
        start: seconds to seek to first.
        size: frame size, as in :func:`~imd_core.media.decode.decode_clip`.
        sample_rate, block_seconds: audio output format.
        realtime: pace the items on the clock.
        clock: time source; ``sleep`` waits on it (tests pass a fake pair).

    Raises:
        DecodeError: when the file cannot be opened or has no video stream.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        info: MediaInfo | None = None,
        start: float = 0.0,
        size: int | tuple[int, int] | None = None,
        sample_rate: int = 16000,
        block_seconds: float = 0.1,
        realtime: bool = True,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from imd_core.media.probe import probe

        self.info = info if info is not None else probe(path)
        if not self.info.has_video:
            raise DecodeError(f"{self.info.path}: has no video stream")
        self.path, self.start, self.size = self.info.path, float(start), size
        self.sample_rate, self.block = int(sample_rate), max(1, int(round(block_seconds * sample_rate)))
        self.realtime, self.clock, self.sleep = realtime, clock, sleep
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Makes a running iteration end after its current item (any thread)."""
        self._stopped.set()

    def __iter__(self) -> Iterator[VideoFrame | AudioBlock]:
        self._stopped.clear()
        t0 = self.clock()
        for media_time, _, item in self._media_items():
            if self._stopped.is_set():
                return
            due = t0 + (media_time - self.start)
            if self.realtime:
                wait = due - self.clock()
                if wait > 0:
                    self.sleep(wait)
            if isinstance(item, VideoFrame):
                yield VideoFrame(item.frame, due, item.index, media_time)
            else:
                yield AudioBlock(item.samples, due, self.sample_rate, media_time)

    def _media_items(self) -> Iterator[tuple[float, int, VideoFrame | AudioBlock]]:
        """(media_time, tie-break, item) in media-time order, merged across streams."""
        import av

        from imd_core.media.decode import _to_rgb
        from imd_core.media.probe import Watchdog, frame_rotation, open_media, video_stream

        dog = Watchdog(self.path, timeout=float("inf"))
        heap: list = []
        seq = 0
        with open_media(self.path, dog) as container:
            vs = video_stream(container)
            a = container.streams.audio[0] if container.streams.audio else None
            t0 = container.start_time / av.time_base if container.start_time is not None else 0.0
            if self.start > 0:
                container.seek(int((self.start + t0) / float(vs.time_base)), stream=vs, backward=True)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate) if a else None
            pending = np.zeros(0, np.float32)
            audio_t: float | None = None  # media time of pending[0]
            newest = {vs: -1.0, a: -1.0}
            index = 0
            streams = [s for s in (vs, a) if s is not None]
            for packet in container.demux(streams):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in frames:
                    if frame.pts is None:
                        continue
                    ft = float(frame.pts * packet.stream.time_base) - t0
                    if packet.stream is vs:
                        newest[vs] = ft
                        if ft + 1e-6 < self.start:
                            continue
                        rgb = _to_rgb(frame, self.size, frame_rotation(frame))
                        heapq.heappush(heap, (ft, seq, VideoFrame(rgb, 0.0, index)))
                        index += 1
                    else:
                        if audio_t is None:
                            audio_t = ft
                        for out in resampler.resample(frame):
                            pending = np.concatenate([pending, out.to_ndarray()[0]])
                        while len(pending) >= self.block:
                            if audio_t + self.block / self.sample_rate > self.start:
                                heapq.heappush(
                                    heap, (audio_t, seq, AudioBlock(pending[: self.block], 0.0, 0))
                                )
                            pending, audio_t = pending[self.block :], audio_t + self.block / self.sample_rate
                        newest[a] = audio_t
                    seq += 1
                # Release what no stream can still precede (a stream that stopped 2 s
                # behind the other, e.g. audio shorter than video, no longer holds it up).
                latest = [newest[s] for s in streams]
                horizon = max(min(latest), max(latest) - 2.0)
                while heap and heap[0][0] <= horizon:
                    yield heapq.heappop(heap)
                if self._stopped.is_set():
                    return
            if resampler is not None and audio_t is not None:
                for out in resampler.resample(None):
                    pending = np.concatenate([pending, out.to_ndarray()[0]])
                if len(pending):
                    heapq.heappush(heap, (audio_t, seq, AudioBlock(pending, 0.0, 0)))
            while heap:
                yield heapq.heappop(heap)
