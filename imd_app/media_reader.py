"""The player's media sources, built on ``imd_core.media``: files, webcams, microphones.

:class:`FileReader` turns a file into one time-ordered stream of video frames and 0.1 s
audio blocks (:class:`imd_core.media.live.FilePlayback`, unpaced: the player's clock
paces it). :class:`LiveCamera` and :class:`MicrophoneFeed` wrap the live sources of
:mod:`imd_core.media.live`. All of them run on worker threads
(or PortAudio's); none touches Qt.
"""

from __future__ import annotations

import glob
import logging
import math
import sys
import time
from collections.abc import Callable

import numpy as np

from imd_app.types import MediaOpened
from imd_core.errors import DecodeError, ImdError

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

    Built on :class:`imd_core.media.live.FilePlayback` (one demux pass, no pacing: the
    player's clock paces it); a seek starts a new pass at the new position.

    Args:
        path: the media file.
        max_short_side: frames are scaled so their shorter side is at most this.
        sample_rate: audio output rate (mono float32).
        media: the file's ``MediaInfo`` when already probed (the player probes in a
            killable worker process first, :mod:`imd_app.isolated_decode`); ``None``
            probes here.
        decoder: decode in this worker process
            (:func:`~imd_app.isolated_decode.playback_events`; a wait for one event past
            its timeout fails the read with ``DecodeError("decode timed out ...")``);
            ``None`` decodes in this process, where a file that hangs mid-stream blocks
            the reading thread for good.
        cancelled: with ``decoder``, checked before each wait for an event: ``True``
            (a newer request is pending) ends the read with ``ImdError("cancelled")``.

    Raises:
        DecodeError: the file cannot be opened, or has no video stream.
    """

    def __init__(
        self,
        path: str,
        max_short_side: int = 480,
        sample_rate: int = 16000,
        media=None,
        decoder=None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        from imd_core.media.probe import probe

        self.path = path
        self._decoder = decoder
        self._cancelled = cancelled
        self.sample_rate = int(sample_rate)
        from imd_core.media.verdict import media_problem

        if media is None:
            media = probe(path)
        problem = media_problem(media)  # the verdict predict, batch, data check and training share
        if problem:
            raise DecodeError(f"{path}: {problem}")
        self._media = media
        self._video_end = 0.0  # where the video read so far ends (a truncated file stops early)
        duration = media.duration or media.video_duration or 0.0
        if not duration or not math.isfinite(duration) or duration <= 0:
            raise DecodeError(
                f"{path}: the file reports no duration; remux it (ffmpeg -i in -c copy out.mp4)"
            )
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
        self._playback = None
        self._items = None
        self.seek(0.0)

    def seek(self, seconds: float) -> None:
        from imd_app.isolated_decode import PLAYBACK, playback_events
        from imd_core.media.live import FilePlayback

        self.close()
        start = max(0.0, min(float(seconds), self.info.duration))
        self._video_end = start
        if self._decoder is not None:  # the pass runs in the worker; it starts at the first read
            self._items = self._decoder.stream(
                playback_events,
                self.path,
                key=PLAYBACK,
                start=start,
                size=self._size,
                sample_rate=self.sample_rate,
                block_seconds=AUDIO_BLOCK_SECONDS,
                cancelled=self._cancelled,
            )
            return
        self._playback = FilePlayback(
            self.path,
            start=start,
            size=self._size,
            sample_rate=self.sample_rate,
            block_seconds=AUDIO_BLOCK_SECONDS,
            realtime=False,
        )
        self._items = iter(self._playback)

    def read(self) -> tuple[str, float, np.ndarray] | None:
        """The next event in media-time order; ``None`` at the end of the file.

        Raises:
            DecodeError: the file is damaged at this point, or ends here although it
                claims to go on (truncated).
        """
        from imd_core.media.live import VideoFrame as LiveFrame

        try:
            item = next(self._items)
        except StopIteration:
            self._check_complete()
            return None
        except ImdError as exc:  # e.g. "decode timed out after N s ..." from the worker: say which file
            if self.path in str(exc):
                raise
            raise DecodeError(f"{self.path}: {exc}") from None
        except Exception as exc:  # PyAV errors mid-file: report as a decode error
            raise DecodeError(f"{self.path}: decoding stopped ({type(exc).__name__}: {exc})") from None
        if self._decoder is None:
            item = (
                ("video", float(item.media_time), item.frame)
                if isinstance(item, LiveFrame)
                else ("audio", float(item.media_time), item.samples)
            )
        if item[0] == "video":  # ("video" | "audio", media time, data)
            self._video_end = max(self._video_end, item[1] + 1.0 / self.info.fps)
        return item

    def _check_complete(self) -> None:
        """At the end of the file: a video that stops well before the claimed duration is truncated.

        Raises:
            DecodeError: with the same reason ``imd predict`` and ``imd data check`` give.
        """
        from imd_core.media.verdict import truncation_problem

        problem = truncation_problem(self._media, self._video_end)
        if problem:
            raise DecodeError(f"{self.path}: {problem}")

    def close(self) -> None:
        if self._playback is not None:
            self._playback.stop()
        if self._items is not None:
            self._items.close()  # closes the container
        self._playback = self._items = None


def open_file(
    path: str,
    max_width: int = 960,
    sample_rate: int = 16000,
    media=None,
    decoder=None,
    cancelled: Callable[[], bool] | None = None,
) -> FileReader:
    return FileReader(
        path,
        max_short_side=min(480, max_width),
        sample_rate=sample_rate,
        media=media,
        decoder=decoder,
        cancelled=cancelled,
    )


class LiveCamera:
    """A webcam through :class:`imd_core.media.live.WebcamSource`; times since ``LIVE_EPOCH``."""

    def __init__(self, device: str) -> None:
        from imd_core.media.live import WebcamSource

        self.t0 = LIVE_EPOCH
        self._source = WebcamSource(int(device) if device.isdigit() else device)
        self._source.start()
        h, w = self._source.frame_size
        fps = float(self._source.fps or 30.0)
        self.info = MediaOpened(
            source=f"webcam {device}",
            kind="webcam",
            duration=0.0,
            fps=fps,
            width=int(w),
            height=int(h),
            has_audio=True,
        )

    def read(self, timeout: float = 0.1) -> tuple[float, np.ndarray] | None:
        frame = self._source.read(timeout=timeout)
        if frame is None:
            return None
        return frame.time - self.t0, frame.frame

    def close(self) -> None:
        self._source.stop()


def open_camera(device: str) -> LiveCamera:
    """Raises :class:`DeviceError` when the camera is missing, busy or gives no frame."""
    return LiveCamera(device)


class MicrophoneFeed:
    """The default microphone through :class:`imd_core.media.live.MicrophoneSource`."""

    def __init__(self, on_block: Callable[[float, np.ndarray, int], None], t0: float | None = None) -> None:
        from imd_core.media.live import MicrophoneSource

        self.t0 = LIVE_EPOCH if t0 is None else t0
        self._on_block = on_block
        self._source = MicrophoneSource(callback=self._on_source_block)
        self._source.start()

    def _on_source_block(self, block) -> None:
        self._on_block(block.time - self.t0, block.samples, int(block.sample_rate))

    def close(self) -> None:
        self._source.stop()


def open_microphone(
    on_block: Callable[[float, np.ndarray, int], None], t0: float | None = None
) -> MicrophoneFeed:
    """Raises :class:`DeviceError` when there is no input device."""
    return MicrophoneFeed(on_block, t0)
