"""The player's media sources, built on ``imd_core.media``: files, webcams, microphones.

:class:`FileReader` turns a file into one time-ordered stream of video frames and short
audio blocks (decoded a chunk at a time with :func:`imd_core.media.decode.decode_clip`,
which seeks, so a seek costs one chunk). :class:`LiveCamera` and :class:`MicrophoneFeed`
wrap the live sources of :mod:`imd_core.media.live`. All of them run on worker threads
(or PortAudio's); none touches Qt.
"""

from __future__ import annotations

import glob
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from imd_app.types import MediaOpened
from imd_core.errors import DecodeError, DeviceError

log = logging.getLogger(__name__)

AUDIO_BLOCK_SECONDS = 0.1

# Live sources report seconds since this instant (one clock for camera and microphone).
LIVE_EPOCH = time.monotonic()


def output_sample_rate(default: int = 16000) -> int:
    """The default output device's sample rate (``default`` when there is none)."""
    try:
        import sounddevice as sd

        return int(sd.query_devices(kind="output")["default_samplerate"])
    except Exception:  # no PortAudio, no device: muted playback at the model's rate
        return default


def camera_devices() -> list[str]:
    """Camera choices for the picker: ``/dev/video*`` on Linux, else indices 0-3."""
    if sys.platform.startswith("linux"):
        found = sorted(glob.glob("/dev/video*"))
        if found:
            return found
    return ["0", "1", "2", "3"]


class FileReader:
    """A file as a stream of ``("video", t, rgb)`` and ``("audio", t, samples)`` events.

    Args:
        path: the media file.
        max_short_side: frames are scaled so their shorter side is at most this.
        sample_rate: audio output rate (mono float32).
        chunk_seconds: decoded at once; bounds memory and the cost of a seek.

    Raises:
        DecodeError: the file cannot be opened, or has no video stream.
    """

    def __init__(self, path: str, max_short_side: int = 480, sample_rate: int = 16000, chunk_seconds: float = 1.0) -> None:
        from imd_core.media.decode import probe

        self.path = path
        self.sample_rate = int(sample_rate)
        self.chunk_seconds = float(chunk_seconds)
        media = probe(path)
        if not media.has_video:
            raise DecodeError(f"{path}: no video stream; open a video file")
        duration = media.duration or media.video_duration or 0.0
        if not duration or not math.isfinite(duration) or duration <= 0:
            raise DecodeError(f"{path}: the file reports no duration; remux it (ffmpeg -i in -c copy out.mp4)")
        short = min(media.width, media.height) if media.width and media.height else 0
        self._size = max_short_side if short > max_short_side else None
        scale = max_short_side / short if self._size else 1.0
        self.info = MediaOpened(
            source=str(path),
            kind="file",
            duration=float(duration),
            fps=float(media.fps or 25.0),
            width=int(round(media.width * scale)),
            height=int(round(media.height * scale)),
            has_audio=bool(media.has_audio),
        )
        self._events: deque[tuple[str, float, np.ndarray]] = deque()
        self._next = 0.0

    def seek(self, seconds: float) -> None:
        self._events.clear()
        self._next = max(0.0, min(float(seconds), self.info.duration))

    def read(self) -> tuple[str, float, np.ndarray] | None:
        """The next event in time order; ``None`` at the end of the file.

        Raises:
            DecodeError: the file is damaged at this point.
        """
        while not self._events:
            if self._next >= self.info.duration - 1e-3:
                return None
            self._decode_chunk()
        return self._events.popleft()

    def _decode_chunk(self) -> None:
        from imd_core.media.decode import decode_clip

        start = self._next
        end = min(start + self.chunk_seconds, self.info.duration)
        clip = decode_clip(self.path, start, end, size=self._size, sample_rate=self.sample_rate,
                           audio=self.info.has_audio, threads=1)
        self._next = end
        events: list[tuple[str, float, np.ndarray]] = []
        for t, frame in zip(clip.frame_times, clip.frames, strict=True):
            if start - 1e-6 <= t < end - 1e-6:
                events.append(("video", float(t), frame))
        if clip.audio is not None and len(clip.audio):
            block = max(1, int(AUDIO_BLOCK_SECONDS * self.sample_rate))
            for i in range(0, len(clip.audio), block):
                events.append(("audio", start + i / self.sample_rate, clip.audio[i:i + block]))
        # Audio a little ahead of video, so the clock never waits on a frame's audio.
        events.sort(key=lambda e: (e[1] - (0.2 if e[0] == "audio" else 0.0)))
        self._events.extend(events)

    def close(self) -> None:
        self._events.clear()


def open_file(path: str, max_width: int = 960, sample_rate: int = 16000) -> FileReader:
    return FileReader(path, max_short_side=min(480, max_width), sample_rate=sample_rate)


class LiveCamera:
    """A webcam through :class:`imd_core.media.live.WebcamSource`; times from the open."""

    def __init__(self, device: str) -> None:
        try:
            from imd_core.media.live import WebcamSource
        except ImportError as exc:
            raise DeviceError(f"webcam support is not available in this build ({exc})") from None
        self.t0 = LIVE_EPOCH
        source = int(device) if device.isdigit() else device
        self._source = WebcamSource(source)
        self._source.start()
        h, w = self._source.frame_size if hasattr(self._source, "frame_size") else (0, 0)
        fps = float(getattr(self._source, "fps", 0.0) or 30.0)
        self.info = MediaOpened(source=f"webcam {device}", kind="webcam", duration=0.0, fps=fps,
                                width=int(w), height=int(h), has_audio=True)

    def read(self, timeout: float = 0.1) -> tuple[float, np.ndarray] | None:
        got = self._source.read(timeout=timeout)
        if got is None:
            return None
        t, frame = _time_and_data(got)
        return t - self.t0, frame

    def close(self) -> None:
        self._source.stop()


def open_camera(device: str) -> LiveCamera:
    return LiveCamera(device)


class MicrophoneFeed:
    """The default microphone through :class:`imd_core.media.live.MicrophoneSource`."""

    def __init__(self, on_block: Callable[[float, np.ndarray, int], None], t0: float | None = None) -> None:
        try:
            from imd_core.media.live import MicrophoneSource
        except ImportError as exc:
            raise DeviceError(f"microphone support is not available in this build ({exc})") from None
        self.t0 = LIVE_EPOCH if t0 is None else t0
        self._on_block = on_block
        self._source = MicrophoneSource(callback=self._on_source_block)
        self._source.start()

    def _on_source_block(self, *got) -> None:
        t, block = _time_and_data(got if len(got) > 1 else got[0])
        self._on_block(t - self.t0, np.asarray(block, np.float32).reshape(len(block), -1).mean(axis=1),
                       int(self._source.sample_rate))

    def close(self) -> None:
        self._source.stop()


def open_microphone(on_block: Callable[[float, np.ndarray, int], None], t0: float | None = None) -> MicrophoneFeed:
    return MicrophoneFeed(on_block, t0)


def _time_and_data(got) -> tuple[float, np.ndarray]:
    """(time, array) from a live source's frame/block object or tuple."""
    if isinstance(got, tuple):
        a, b = got
        return (float(a), b) if np.isscalar(a) else (float(b), a)
    t = getattr(got, "time", getattr(got, "timestamp", None))
    data = getattr(got, "frame", getattr(got, "samples", getattr(got, "data", None)))
    return float(t), data
