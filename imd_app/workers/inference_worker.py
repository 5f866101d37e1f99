"""The player's inference worker: the streaming engine on its own thread.

``submit_frame`` / ``submit_audio`` take exactly what the GUI presents and plays; they are
thread-safe, never block, and drop the oldest entries when the worker falls behind.
Results go back to the GUI thread as queued signals carrying frozen values.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from imd_app.engine_session import EngineSession
from imd_app.spectrogram import LogMelStreamer, resample_linear
from imd_app.types import InferenceStats, ModelSpec
from imd_core.errors import ImdError

log = logging.getLogger(__name__)

SPECTROGRAM_RATE = 16000


class InferenceWorker(QObject):
    model_loaded = Signal(object)  # ModelInfo
    model_failed = Signal(str)
    loading_changed = Signal(bool)
    result_ready = Signal(object)  # WindowResult
    spectrogram_ready = Signal(object)  # float32 (K, mel_bins)
    stats_changed = Signal(object)  # InferenceStats
    finished = Signal()
    cuda_checked = Signal(bool)  # whether torch sees a CUDA device (checked on this thread)

    def __init__(self, max_frames: int = 90, max_audio_blocks: int = 400, mel_bins: int = 64) -> None:
        super().__init__()
        # Entries carry the epoch (count of resets requested) they were submitted in.
        self._frames: deque[tuple[int, float, np.ndarray]] = deque(maxlen=max_frames)
        self._audio: deque[tuple[int, float, np.ndarray, int]] = deque(maxlen=max_audio_blocks)
        self._epoch = 0  # last reset requested (any thread)
        self._active_epoch = 0  # last reset handled (worker thread)
        self._media: tuple[str, float, float, float] = ("", 0.0, 0.0, 0.0)  # the newest reset's arguments
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._mel = LogMelStreamer(SPECTROGRAM_RATE, mel_bins)
        self._session: EngineSession | None = None
        self._result_times: deque[float] = deque(maxlen=30)
        self.frames_dropped = 0
        self.frames_fed_since_reset = 0  # frames given to the engine since the newest reset
        self.results_emitted = 0

    # -- any thread ----------------------------------------------------------------
    def submit_frame(self, media_time: float, rgb: np.ndarray) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.frames_dropped += 1
        self._frames.append((self._epoch, media_time, rgb))
        self._wake.set()

    def submit_audio(self, media_time: float, samples: np.ndarray, sample_rate: int) -> None:
        self._audio.append((self._epoch, media_time, samples, sample_rate))
        self._wake.set()

    def request_reset(
        self, source: str, start_time: float = 0.0, duration: float = 0.0, fps: float = 0.0
    ) -> None:
        """Forget buffered media (new source, seek, loop); windows restart at ``start_time``.

        ``duration`` (0 for a live source) and ``fps`` let a short file get a shorter window.
        """
        self._epoch += 1
        self._commands.put(("reset", (source, float(start_time), float(duration), float(fps)), self._epoch))
        self._wake.set()

    def request_model(self, spec: ModelSpec) -> None:
        self._commands.put(("model", spec))
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- worker thread -------------------------------------------------------------
    @Slot()
    def run(self) -> None:
        try:
            import torch  # the heavy import happens here, not on the GUI thread

            self.cuda_checked.emit(bool(torch.cuda.is_available()))
            while not self._stop.is_set():
                busy = self._handle_commands()
                busy |= self._feed()
                busy |= self._infer()
                if not busy:
                    self._wake.wait(0.02)
                    self._wake.clear()
        finally:
            self._session = None
            self.finished.emit()

    def _handle_commands(self) -> bool:
        handled = False
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return handled
            handled = True
            if cmd[0] == "reset":
                self._active_epoch = cmd[2]
                self._media = cmd[1]
                self.frames_fed_since_reset = 0
                self._mel.reset()
                if self._session is not None:
                    self._session.reset(*cmd[1])
            elif cmd[0] == "model":
                self._load(cmd[1])

    def _load(self, spec: ModelSpec) -> None:
        self.loading_changed.emit(True)
        try:
            session = EngineSession.load(spec)
        except ImdError as exc:
            log.warning("model %s not loaded: %s", spec.folder, exc)
            self.model_failed.emit(str(exc))
        except Exception as exc:  # an incompatible folder can fail anywhere in loading
            log.exception("model %s not loaded", spec.folder)
            self.model_failed.emit(f"{spec.folder}: cannot load this model ({type(exc).__name__}: {exc})")
        else:
            self._session = session
            self._session.reset(*self._media)
            self.model_loaded.emit(session.info)
        finally:
            self.loading_changed.emit(False)

    def _feed(self) -> bool:
        fed = False
        columns: list[np.ndarray] = []
        while self._audio:
            epoch, t, samples, rate = self._audio.popleft()
            fed = True
            if not self._current(epoch):
                continue
            if self._session is not None:
                self._session.push_audio(t, samples, rate)
            columns.append(self._mel.push(resample_linear(samples, rate, SPECTROGRAM_RATE)))
        while self._frames:
            epoch, t, rgb = self._frames.popleft()
            fed = True
            if not self._current(epoch):
                continue
            self.frames_fed_since_reset += 1
            if self._session is not None:
                self._session.push_frame(t, rgb)
        if columns:
            cols = np.concatenate(columns)
            if len(cols):
                self.spectrogram_ready.emit(cols)
        return fed

    def _current(self, epoch: int) -> bool:
        """Whether an entry belongs to the newest source/seek (handling a reset it was queued behind)."""
        if epoch > self._active_epoch:
            self._handle_commands()
        return epoch == self._active_epoch

    def _infer(self) -> bool:
        if self._session is None:
            return False
        try:
            results = self._session.poll()
        except ImdError as exc:
            log.warning("inference failed: %s", exc)
            self.model_failed.emit(str(exc))
            self._session = None
            return False
        if not results:
            return False
        now = time.monotonic()
        s = self._session
        for r in results:
            self._result_times.append(now)
            self.results_emitted += 1
            self.result_ready.emit(r)
        rate = 0.0
        if len(self._result_times) >= 2:
            span = self._result_times[-1] - self._result_times[0]
            rate = (len(self._result_times) - 1) / span if span > 0 else 0.0
        self.stats_changed.emit(
            InferenceStats(rate=rate, latency=float(results[-1].latency or 0.0), skipped=s.skipped)
        )
        return True
