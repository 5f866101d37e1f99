"""The player's decode worker: a file or a webcam, decoded off the GUI thread.

A loop on its own QThread keeps the bounded frame queue and audio ring full; opens and
seeks are requests taken between reads (the newest wins). A file is probed in a sandbox,
then decoded in-process by a :class:`FileReader` thread; a file that yields nothing for
``decode_timeout`` seconds fails, and the loop never waits more than ``READ_WAIT``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage

from imd_app.audio_output import AudioRing
from imd_app.frame_queue import FrameQueue
from imd_app.media_reader import END, FileReader, LiveCamera, open_camera
from imd_app.types import VideoFrame
from imd_core.errors import DecodeError, ImdError
from imd_core.media.sandbox import DEFAULT_DECODE_TIMEOUT, DecodeSandbox

if TYPE_CHECKING:
    from imd_core.media.probe import MediaInfo

log = logging.getLogger(__name__)

PROBE = "probe"  # the sandbox key of a file's probe, for abort()
# Seconds one read waits for the reader thread before the loop looks at new requests.
READ_WAIT = 0.05
# A reader that has had nothing for this long is stuck (a healthy one waits milliseconds).
STUCK_SECONDS = 0.5


def to_qimage(rgb: np.ndarray, fit: tuple[int, int] | None = None) -> QImage:
    """A deep-copied RGB888 ``QImage`` of a uint8 (H, W, 3) array, smoothly scaled to fit ``fit`` (w, h)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    if (
        fit is not None
        and fit[0] > 0
        and fit[1] > 0
        and image.size().scaled(*fit, Qt.AspectRatioMode.KeepAspectRatio) != image.size()
    ):
        return image.scaled(
            *fit, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    return image.copy()


class DecodeWorker(QObject):
    opened = Signal(object)  # MediaOpened
    failed = Signal(str)
    finished = Signal()

    def __init__(self, frames: FrameQueue, ring: AudioRing, max_display_width: int = 960) -> None:
        super().__init__()
        self.frames = frames
        self.ring = ring
        self.max_display_width = max_display_width
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending_open: tuple[str, str, float] | None = None  # (kind, source, start)
        self._pending_seek: float | None = None
        self._pending_close = False
        self._reader: FileReader | None = None
        self._camera: LiveCamera | None = None
        self._generation = 0
        # The view's size (w, h): frames are scaled here so the GUI thread only copies them.
        self.display_size: tuple[int, int] | None = None
        # Seconds a probe, or a wait for the next event, may take (set from the GUI
        # thread, read at each open).
        self.decode_timeout = DEFAULT_DECODE_TIMEOUT
        self._sandbox: DecodeSandbox | None = None  # probes files; started at the first one

    # -- any thread ----------------------------------------------------------------
    def request_open_file(self, path: str, start: float = 0.0) -> None:
        with self._lock:
            self._pending_open = ("file", path, float(start))
            self._pending_seek = None
        self._abort_waits()
        self._wake.set()

    def request_open_camera(self, device: str) -> None:
        with self._lock:
            self._pending_open = ("webcam", device, 0.0)
            self._pending_seek = None
        self._abort_waits()
        self._wake.set()

    def request_seek(self, seconds: float) -> None:
        with self._lock:
            self._pending_seek = float(seconds)
        self._wake.set()

    def request_close(self) -> None:
        with self._lock:
            self._pending_close = True
            self._pending_open = None
            self._pending_seek = None
        self._abort_waits()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._abort_waits()
        self._wake.set()

    def _abort_waits(self) -> None:
        """A newer request wins over a probe, which may hang until its deadline (a read never does)."""
        sandbox = self._sandbox
        if sandbox is not None:
            sandbox.abort(PROBE)

    @property
    def probing(self) -> bool:
        """Whether this worker is waiting on a file's probe now (any thread)."""
        sandbox = self._sandbox
        return sandbox is not None and sandbox.waiting_key == PROBE

    @property
    def stuck(self) -> bool:
        """Whether the playing file has given nothing for ``STUCK_SECONDS`` or more (any thread)."""
        reader = self._reader
        return reader is not None and reader.starved() >= STUCK_SECONDS

    # -- worker thread -------------------------------------------------------------
    @Slot()
    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self._handle_requests()
                if self._camera is not None:
                    self._read_camera()
                elif self._reader is not None and self._has_room():
                    self._read_file()
                else:
                    self._wake.wait(0.01)
                    self._wake.clear()
        finally:
            self._close_sources()
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None
            self.finished.emit()

    def _handle_requests(self) -> None:
        with self._lock:
            pending_open, self._pending_open = self._pending_open, None
            seek, self._pending_seek = self._pending_seek, None
            close, self._pending_close = self._pending_close, False
        if close:
            self._close_sources()
            self._generation = self.frames.new_generation()
            self.ring.reset(0.0)
        if pending_open is not None:
            self._open(*pending_open)
        if seek is not None and self._reader is not None:
            self._generation = self.frames.new_generation()
            self.ring.reset(seek)
            try:
                self._reader.seek(seek)
            except ImdError as exc:
                self._fail(str(exc))

    def _open(self, kind: str, source: str, start: float) -> None:
        self._close_sources()
        self._generation = self.frames.new_generation()
        self.ring.reset(start)
        try:
            if kind == "file":
                media = self._probe(source)
                if media is None:
                    return  # superseded by a newer request, or stopping
                self._reader = FileReader(
                    source,
                    media,
                    max_short_side=min(480, self.max_display_width),
                    start=start,
                    sample_rate=self.ring.sample_rate,
                    timeout=self.decode_timeout,
                )
                info = self._reader.info
            else:
                self._camera = open_camera(source)
                info = self._camera.info
        except ImdError as exc:
            self._close_sources()
            self._fail(str(exc))
            return
        except Exception as exc:  # a decoder library can fail in ways it does not document
            log.exception("opening %s failed", source)
            self._close_sources()
            self._fail(f"{source}: cannot open ({type(exc).__name__}: {exc})")
            return
        if not info.has_audio:
            self.ring.eof = True
        self.opened.emit(info)

    def _probe(self, path: str) -> MediaInfo | None:
        """The file's ``MediaInfo`` from the sandbox, killed at ``decode_timeout``.

        Returns ``None`` when a newer request (or :meth:`stop`) aborted the probe.

        Raises:
            ImdError: the file cannot be read, or its probe timed out.
        """
        from imd_core.media.probe import probe  # a plain function: the sandbox runs it as it is

        if self._sandbox is None:
            self._sandbox = DecodeSandbox(self.decode_timeout)
        self._sandbox.timeout = self.decode_timeout
        try:
            return self._sandbox.call(probe, path, key=PROBE, cancelled=self._superseded)
        except Exception as exc:
            if self._superseded():
                log.debug("probe of %s aborted by a newer request", path)
                return None
            if isinstance(exc, OSError):  # a PyAV error probe does not translate, sent back as it is
                raise DecodeError(f"{path}: cannot open ({type(exc).__name__}: {exc})") from None
            if isinstance(exc, ImdError) and path not in str(exc):  # "decode timed out ...": say which file
                raise DecodeError(f"{path}: {exc}") from None
            raise

    def _superseded(self) -> bool:
        """A newer open or close, or :meth:`stop`, is waiting."""
        with self._lock:
            newer = self._pending_open is not None or self._pending_close
        return newer or self._stop.is_set()

    def _fail(self, message: str) -> None:
        log.warning("decode: %s", message)
        self.failed.emit(message)

    def _has_room(self) -> bool:
        # Leave room for one read's worth of audio so a frame never waits behind it.
        return not self.frames.full() and self.ring.space() > self.ring.sample_rate // 4

    def _read_file(self) -> None:
        reader, generation = self._reader, self._generation
        try:
            packet = reader.read(READ_WAIT)
        except ImdError as exc:
            self._fail(str(exc))
            reader.close()
            self._reader = None
            self.frames.mark_end(generation)
            self.ring.eof = True
            return
        if packet is None:  # nothing yet: look at new requests, then wait again
            return
        if packet is END:
            self.frames.mark_end(generation)
            self.ring.eof = True
            self._wake.wait(0.02)
            self._wake.clear()
            return
        kind, t, data = packet
        if kind == "video":
            self.frames.push(
                VideoFrame(time=t, rgb=data, image=to_qimage(data, self.display_size)), generation
            )
        else:
            self._write_audio(data)

    def _write_audio(self, samples: np.ndarray) -> None:
        generation = self._generation
        while len(samples) and not self._stop.is_set():
            with self._lock:
                if self._pending_seek is not None or self._pending_open is not None or self._pending_close:
                    return
            if generation != self.frames.generation:
                return
            taken = self.ring.write(samples)
            samples = samples[taken:]
            if len(samples):
                time.sleep(0.01)

    def _read_camera(self) -> None:
        camera, generation = self._camera, self._generation
        try:
            got = camera.read(timeout=0.1)
        except ImdError as exc:
            self._fail(str(exc))
            self._close_sources()
            return
        if got is None:
            return
        t, rgb = got
        self.frames.push_latest(
            VideoFrame(time=t, rgb=rgb, image=to_qimage(rgb, self.display_size)), generation
        )

    def _close_sources(self) -> None:
        for src in (self._reader, self._camera):
            if src is not None:
                try:
                    src.close()
                except Exception:  # closing must never block shutting down
                    log.exception("closing a media source failed")
        self._reader = None
        self._camera = None
