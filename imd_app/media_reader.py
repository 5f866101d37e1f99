"""The player's media sources, built on ``imd_core.media``: files, webcams, microphones.

:class:`FileReader` turns a file into one time-ordered stream of video frames and 0.1 s
audio blocks, unpaced (the player's clock paces it). All sources run on worker threads
(or PortAudio's); none touches Qt.
"""

from __future__ import annotations

import glob
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from imd_app.types import MediaOpened
from imd_core.errors import DecodeError, ImdError

if TYPE_CHECKING:
    from imd_core.media.live import FilePlayback
    from imd_core.media.probe import MediaInfo

log = logging.getLogger(__name__)

AUDIO_BLOCK_SECONDS = 0.1
# Events a file's reader thread decodes ahead (~0.2 s at 30 fps); the frame queue holds the rest.
READ_AHEAD_EVENTS = 8
# The end of the file, as :meth:`FileReader.read` returns it.
END = ("end", 0.0, None)
_PASS_END = object()  # what a pass puts last when it reached the end

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

    Decoded in this process, as mpv, VLC and ffplay do: one pass of
    :class:`imd_core.media.live.FilePlayback` (unpaced: the player's clock paces it) runs
    on its own daemon thread and feeds a small bounded queue; a seek starts a new pass.
    A file that hangs inside FFmpeg mid-stream blocks only that thread: :meth:`read`
    never waits longer than ``wait``, and fails once nothing has come for ``timeout``
    seconds. A pass left behind (a seek, a close, a timeout) ends after its current
    item; one stuck inside C stays blocked there (a leaked thread and file handle per
    hung file, as in those players), since nothing in-process can stop it.

    Args:
        path: the media file.
        media: its ``MediaInfo`` (the player probes in a sandbox process first).
        start: seconds to start at.
        max_short_side: frames are scaled so their shorter side is at most this.
        sample_rate: audio output rate (mono float32).
        timeout: seconds :meth:`read` may go without an event before the file fails.

    Raises:
        DecodeError: the file has no video stream, no duration, or is otherwise unplayable.
    """

    def __init__(
        self,
        path: str,
        media: MediaInfo,
        *,
        start: float = 0.0,
        max_short_side: int = 480,
        sample_rate: int = 16000,
        timeout: float,
    ) -> None:
        from imd_core.media.verdict import media_problem

        self.path = path
        self.sample_rate = int(sample_rate)
        self.timeout = float(timeout)
        problem = media_problem(media)  # the verdict predict, batch, data check and training share
        if problem:
            raise DecodeError(f"{path}: {problem}")
        self._media = media
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
        self._pass: _DecodePass | None = None
        self.seek(start)

    def seek(self, seconds: float) -> None:
        """Leaves the current pass behind and starts one at ``seconds``."""
        from imd_core.media.live import FilePlayback

        self.close()
        start = max(0.0, min(float(seconds), self.info.duration))
        self._video_end = start  # where the video read so far ends (a truncated file stops early)
        self._ended = False
        self._starved_since: float | None = None
        playback = FilePlayback(
            self.path,
            info=self._media,
            start=start,
            size=self._size,
            sample_rate=self.sample_rate,
            block_seconds=AUDIO_BLOCK_SECONDS,
            realtime=False,
        )
        self._pass = _DecodePass(playback)

    def starved(self) -> float:
        """Seconds :meth:`read` has gone without an event so far (0 while events come; any thread)."""
        since = self._starved_since
        return 0.0 if since is None else time.monotonic() - since

    def read(self, wait: float) -> tuple[str, float, np.ndarray | None] | None:
        """The next event in media-time order; ``END`` at the end of the file (and after);
        ``None`` when none came within ``wait`` seconds.

        Raises:
            DecodeError: the file is damaged at this point, ends here although it claims
                to go on (truncated), or gave no event for ``timeout`` seconds.
        """
        if self._ended or self._pass is None:
            return END
        asked = time.monotonic()
        try:
            item = self._pass.events.get(timeout=wait)
        except queue.Empty:
            if self._starved_since is None:
                self._starved_since = asked
            if self.starved() > self.timeout:
                raise DecodeError(
                    f"{self.path}: decode timed out after {self.timeout:g} s (nothing decoded for that "
                    "long; the file may be damaged, a pipe, or on a stalled disk)"
                ) from None
            return None
        self._starved_since = None
        if item is _PASS_END:
            self._ended = True
            self._check_complete()
            return END
        if isinstance(item, ImdError):
            raise item if self.path in str(item) else DecodeError(f"{self.path}: {item}")
        if isinstance(item, Exception):  # PyAV errors mid-file, e.g. a seek the demuxer refuses
            raise DecodeError(f"{self.path}: decoding stopped ({type(item).__name__}: {item})")
        if item[0] == "video":
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
        """Leaves the current pass behind (it ends by itself; this never waits for it)."""
        if self._pass is not None:
            self._pass.abandon()
        self._pass = None


class _DecodePass:
    """One :class:`FilePlayback` pass on a daemon thread, feeding ``events`` (bounded).

    It puts each event, then ``_PASS_END`` or the exception that stopped it. Once
    :meth:`abandon` is called it stops at its next event and closes the file; a thread
    blocked inside FFmpeg does so only when (if ever) that call returns.
    """

    def __init__(self, playback: FilePlayback) -> None:
        self.events: queue.Queue[object] = queue.Queue(maxsize=READ_AHEAD_EVENTS)
        self._playback = playback
        self._abandoned = threading.Event()
        threading.Thread(target=self._run, name="imd-file-reader", daemon=True).start()

    def abandon(self) -> None:
        self._abandoned.set()

    def _run(self) -> None:
        from imd_core.media.live import VideoFrame as LiveFrame

        items = iter(self._playback)
        try:
            for item in items:
                if isinstance(item, LiveFrame):
                    event = ("video", float(item.media_time), item.frame)
                else:
                    event = ("audio", float(item.media_time), item.samples)
                if not self._put(event):
                    return
            self._put(_PASS_END)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which reports it in one line
            self._put(exc)
        finally:
            items.close()  # closes the container

    def _put(self, item: object) -> bool:
        """Puts ``item`` once there is room; ``False`` when abandoned first."""
        while not self._abandoned.is_set():
            try:
                self.events.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


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
