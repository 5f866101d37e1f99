"""Streaming inference for live sources: timestamped frames and audio in, a result per hop out.

The engine owns no threads: producers call ``push_frame`` / ``push_audio`` and a consumer
calls ``run_once``, from any threads (one lock, never held during inference). Window ``k``
is due once video and audio reach its end (audio may be ``audio_grace`` late); when
inference is slow the newest due window wins and the others count as skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np

from imd_core.errors import ConfigError, DataError
from imd_core.inference.inputs import WindowInput
from imd_core.inference.results import WindowResult

log = logging.getLogger(__name__)

MODEL_SAMPLE_RATE = 16000
_EPS = 1e-6


class WindowPredictor(Protocol):
    """What the engine runs windows through (``Predictor`` implements it)."""

    def predict_windows(self, items: Sequence[WindowInput]) -> list[WindowResult]: ...


@dataclasses.dataclass(frozen=True)
class StreamStats:
    """A snapshot of the engine's counters (safe to hand to another thread)."""

    windows_done: int = 0
    windows_skipped: int = 0
    frames_received: int = 0
    frames_kept: int = 0
    audio_blocks: int = 0
    buffered_frames: int = 0
    buffered_audio_seconds: float = 0.0
    last_latency: float | None = None
    mean_latency: float | None = None
    max_latency: float | None = None
    last_inference_seconds: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class StreamWindow:
    """A due window handed out by :meth:`StreamingEngine.next_window`.

    Attributes:
        index: ``k`` of the window (windows are numbered from ``origin``).
        input: the window's media.
        last_sample_arrival: engine-clock time at which the window's last sample was
            pushed; latency is measured from it.
        skipped: windows passed over to hand out this one (newest wins).
    """

    index: int
    input: WindowInput
    last_sample_arrival: float
    skipped: int


class ClockedAudioRing:
    """A bounded mono audio buffer on the sources' clock, at the source's sample rate.

    Blocks are appended contiguously; timestamp jitter within ``tolerance`` is ignored,
    a gap is filled with silence and a clock running backwards re-anchors the buffer
    (so drift between the sound card and the monotonic clock never piles up). Windows
    are read by time range; the player's ``AudioRing`` is a plain FIFO read in order.
    """

    def __init__(self, seconds: float, tolerance: float = 0.1) -> None:
        self.seconds = float(seconds)
        self.tolerance = float(tolerance)
        self.sample_rate: int | None = None
        self._buf = np.zeros(0, np.float32)
        self._n = 0  # samples ever written since the anchor
        self._t0: float | None = None  # time of absolute sample 0

    def reset(self) -> None:
        self._n = 0
        self._t0 = None

    @property
    def end_time(self) -> float | None:
        """Time just after the newest sample (``None`` when empty)."""
        return None if self._t0 is None or self.sample_rate is None else self._t0 + self._n / self.sample_rate

    @property
    def buffered_seconds(self) -> float:
        if self.sample_rate is None:
            return 0.0
        return min(self._n, self._buf.size) / self.sample_rate

    def push(self, block: np.ndarray, t: float, sample_rate: int) -> None:
        """Appends ``block`` (float32 ``(N,)`` or ``(N, C)``) whose first sample is at ``t``."""
        if sample_rate != self.sample_rate:
            if self.sample_rate is not None:
                log.info(
                    "audio sample rate changed %s -> %s Hz: audio buffer restarted",
                    self.sample_rate,
                    sample_rate,
                )
            self.sample_rate = int(sample_rate)
            self._buf = np.zeros(max(1, math.ceil(self.seconds * sample_rate)), np.float32)
            self.reset()
        if self._t0 is None:
            self._t0 = t
        else:
            gap = t - (self._t0 + self._n / sample_rate)
            if gap > self.tolerance:
                self._write(np.zeros(min(round(gap * sample_rate), self._buf.size), np.float32))
                self._t0 = t - self._n / sample_rate
            elif gap < -self.tolerance:
                self._t0 = t - self._n / sample_rate
        self._write(block)

    def _write(self, samples: np.ndarray) -> None:
        cap = self._buf.size
        if samples.size > cap:  # only the newest ``cap`` samples can survive anyway
            self._n += samples.size - cap
            samples = samples[-cap:]
        n = samples.size
        pos = self._n % cap
        first = min(n, cap - pos)
        self._buf[pos : pos + first] = samples[:first]
        self._buf[: n - first] = samples[first:]
        self._n += n

    def read(self, t_start: float, t_end: float) -> tuple[np.ndarray, float]:
        """Samples of ``[t_start, t_end)`` (silence where nothing is buffered).

        Returns:
            ``(samples (S,) float32 at sample_rate, covered)``: ``covered`` is the
            fraction of the span that real samples filled.
        """
        if self._t0 is None or self.sample_rate is None:
            return np.zeros(0, np.float32), 0.0
        sr, cap = self.sample_rate, self._buf.size
        i0 = round((t_start - self._t0) * sr)
        i1 = round((t_end - self._t0) * sr)
        out = np.zeros(max(0, i1 - i0), np.float32)
        lo, hi = max(i0, self._n - cap, 0), min(i1, self._n)
        if hi > lo:
            idx = np.arange(lo, hi) % cap
            out[lo - i0 : hi - i0] = self._buf[idx]
        covered = max(0, hi - lo) / max(1, i1 - i0)
        return out, covered


class StreamingEngine:
    """Turns live frames and audio blocks into a :class:`WindowResult` per hop.

    Args:
        predictor: anything with ``predict_windows`` (a ``Predictor``).
        window: window length in seconds.
        hop: seconds between window starts (``<= window`` for overlap).
        keep_fps: frames kept per second of video (older frames are thinned on push);
            ``None`` keeps every frame; ``"auto"``: ``max(4, 2 * num_frames / window)``
            when the predictor exposes ``num_frames``.
        frame_size: frames whose shorter side is larger are downscaled to it on push
            (``None`` keeps them as they come); ``"auto"``: ~8/7 of ``image_size``.
        audio_grace: seconds video may run ahead of audio before a window is run
            without waiting for its audio.
        min_audio_coverage: fraction of the window real audio must fill to count as
            present (a microphone that just started is "no audio" until then).
        origin: the time windows are aligned to (default: the first frame's time).
        source: the name results carry as ``path``.
        clock: the clock latency is measured on (``time.monotonic``).
    """

    def __init__(
        self,
        predictor: WindowPredictor,
        *,
        window: float,
        hop: float,
        keep_fps: float | Literal["auto"] | None = "auto",
        frame_size: int | Literal["auto"] | None = "auto",
        audio_grace: float = 0.5,
        min_audio_coverage: float = 0.5,
        origin: float | None = None,
        source: str = "live",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window > 0 or not hop > 0:
            raise ConfigError(f"window and hop must be > 0 seconds, got window={window}, hop={hop}")
        self.predictor = predictor
        self.window = float(window)
        self.hop = float(hop)
        num_frames = getattr(predictor, "num_frames", None)
        if keep_fps == "auto":
            keep_fps = max(4.0, 2.0 * num_frames / self.window) if num_frames else None
            dense_fps = getattr(predictor, "frame_rate", None)  # a densely sampling model needs them all
            if keep_fps is not None and dense_fps:
                keep_fps = max(keep_fps, dense_fps)
        if frame_size == "auto":
            image_size = getattr(predictor, "image_size", None)
            frame_size = max(64, math.ceil(image_size * 8 / 7)) if image_size else None
        self.keep_fps = keep_fps
        self.frame_size = frame_size
        self.audio_grace = float(audio_grace)
        self.min_audio_coverage = float(min_audio_coverage)
        self.source = source
        self.clock = clock
        self._fixed_origin = origin
        # Enough for the newest window plus one hop of slack, at the kept rate.
        self._retain = self.window + self.hop + 0.5
        max_frames = math.ceil(self._retain * keep_fps) + 8 if keep_fps else 4096
        self._frames: collections.deque[tuple[float, float, np.ndarray]] = collections.deque(
            maxlen=max_frames
        )
        self._audio = ClockedAudioRing(self._retain + self.audio_grace)
        self._audio_arrivals: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)
        self._lock = threading.Lock()
        self._latencies: collections.deque[float] = collections.deque(maxlen=256)
        self._reset_state()

    # ------------------------------------------------------------------ producer side
    def push_frame(self, frame: np.ndarray, t: float) -> None:
        """Adds a uint8 ``(H, W, 3)`` RGB frame captured at time ``t`` (seconds)."""
        if not (
            isinstance(frame, np.ndarray)
            and frame.dtype == np.uint8
            and frame.ndim == 3
            and frame.shape[2] == 3
        ):
            got = f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}"
            raise DataError(f"push_frame expects a uint8 (H, W, 3) RGB array, got {got}")
        arrival = self.clock()
        with self._lock:
            self._frames_received += 1
            if self._last_frame_t is not None and t < self._last_frame_t - 1.0:
                log.info("frame time jumped back %.2f s: stream restarted", self._last_frame_t - t)
                self._reset_state(keep_counters=True)
            if self._last_frame_t is not None and t <= self._last_frame_t:
                return  # out of order or duplicate: the buffer must stay sorted
            if self._origin is None:
                self._origin = t if self._fixed_origin is None else self._fixed_origin
            self._last_frame_t = t
            if (
                self.keep_fps
                and self._last_kept_t is not None
                and t - self._last_kept_t < 0.999 / self.keep_fps
            ):
                return
            self._last_kept_t = t
            self._frames.append((t, arrival, self._downscale(frame)))
            self._frames_kept += 1
            self._evict()

    def push_audio(self, block: np.ndarray, t: float, sample_rate: int) -> None:
        """Adds float32 audio (``(N,)`` mono or ``(N, C)`` channels-last) whose first sample is at ``t``."""
        block = np.asarray(block)
        if block.ndim == 2:
            block = block.mean(axis=1)
        if block.ndim != 1 or sample_rate <= 0:
            raise DataError(
                f"push_audio expects (N,) or (N, C) samples and a positive rate, got {block.shape}"
            )
        block = block.astype(np.float32, copy=False)
        arrival = self.clock()
        with self._lock:
            self._audio.push(block, t, int(sample_rate))
            self._audio_blocks += 1
            self._audio_arrivals.append((self._audio.end_time or t, arrival))

    # ------------------------------------------------------------------ consumer side
    def ready(self) -> bool:
        """Whether a window is due (``run_once`` would run the model)."""
        with self._lock:
            return self._newest_due() is not None

    def next_window(self) -> StreamWindow | None:
        """Hands out the newest due window (counting the older due ones as skipped)."""
        with self._lock:
            k = self._newest_due()
            if k is None:
                return None
            skipped = k - self._next_k
            self._skipped += skipped
            self._next_k = k + 1
            start = self._origin + k * self.hop
            end = start + self.window
            kept = [(t, a, f) for t, a, f in self._frames if start - _EPS <= t <= end + _EPS]
            if not kept:  # the video stalled inside this window: nothing to classify
                self._skipped += 1
                return None
            frames = np.stack([f for _, _, f in kept]) if _same_shape(kept) else _stack_resized(kept)
            last_arrival = kept[-1][1]
            audio = None
            if self._audio.sample_rate is not None:
                samples, covered = self._audio.read(start, end)
                if covered >= self.min_audio_coverage:
                    audio = _to_model_rate(samples, self._audio.sample_rate)
                    for block_end, arrival in self._audio_arrivals:
                        if block_end >= end - _EPS:
                            last_arrival = max(last_arrival, arrival)
                            break
            item = WindowInput(
                frames=frames,
                audio=audio,
                path=self.source,
                start=start - self._origin,
                end=end - self._origin,
            )
            return StreamWindow(index=k, input=item, last_sample_arrival=last_arrival, skipped=skipped)

    def complete(
        self, window: StreamWindow, result: WindowResult, inference_seconds: float | None = None
    ) -> WindowResult:
        """Stamps ``result`` with its latency and counts it (for callers running the model themselves)."""
        latency = max(0.0, self.clock() - window.last_sample_arrival)
        with self._lock:
            self._done += 1
            self._latencies.append(latency)
            self._max_latency = max(self._max_latency or 0.0, latency)
            self._last_inference = inference_seconds
        return dataclasses.replace(result, latency=latency)

    def run_once(self) -> WindowResult | None:
        """Runs the model on the newest due window; ``None`` when no window is due."""
        window = self.next_window()
        if window is None:
            return None
        t0 = time.perf_counter()
        result = self.predictor.predict_windows([window.input])[0]
        return self.complete(window, result, time.perf_counter() - t0)

    @property
    def origin(self) -> float | None:
        """The source time of window 0's start (``None`` until the first frame after a reset).

        Results' ``start``/``end`` are relative to it: add it back to get source times.
        """
        with self._lock:
            return self._origin

    @property
    def stats(self) -> StreamStats:
        with self._lock:
            lat = list(self._latencies)
            return StreamStats(
                windows_done=self._done,
                windows_skipped=self._skipped,
                frames_received=self._frames_received,
                frames_kept=self._frames_kept,
                audio_blocks=self._audio_blocks,
                buffered_frames=len(self._frames),
                buffered_audio_seconds=self._audio.buffered_seconds,
                last_latency=lat[-1] if lat else None,
                mean_latency=sum(lat) / len(lat) if lat else None,
                max_latency=self._max_latency,
                last_inference_seconds=self._last_inference,
            )

    def reset(self) -> None:
        """Forgets buffered media and restarts window numbering (after a seek, a new source)."""
        with self._lock:
            self._reset_state()

    # ------------------------------------------------------------------ internals
    def _reset_state(self, keep_counters: bool = False) -> None:
        self._frames.clear()
        self._audio.reset()
        self._audio_arrivals.clear()
        self._origin: float | None = None
        self._last_frame_t: float | None = None
        self._last_kept_t: float | None = None
        self._next_k = 0
        if not keep_counters:
            self._done = self._skipped = 0
            self._frames_received = self._frames_kept = self._audio_blocks = 0
            self._latencies.clear()
            self._max_latency: float | None = None
            self._last_inference: float | None = None

    def _newest_due(self) -> int | None:
        if self._origin is None or self._last_frame_t is None:
            return None
        horizon = self._last_frame_t
        audio_end = self._audio.end_time
        if audio_end is not None:  # audio is expected: wait for it, within the grace period
            horizon = min(horizon, max(audio_end, self._last_frame_t - self.audio_grace))
        k = math.floor((horizon - self._origin - self.window) / self.hop + _EPS)
        return k if k >= self._next_k else None

    def _evict(self) -> None:
        oldest_useful = (self._last_frame_t or 0.0) - self._retain
        while self._frames and self._frames[0][0] < oldest_useful:
            self._frames.popleft()
        audio_end = self._audio.end_time
        while (
            self._audio_arrivals
            and audio_end is not None
            and self._audio_arrivals[0][0] < audio_end - self._retain
        ):
            self._audio_arrivals.popleft()

    def _downscale(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if not self.frame_size or min(h, w) <= self.frame_size:
            return frame.copy()  # the producer may reuse its buffer
        import cv2  # media-only dependency, imported where it is used

        scale = self.frame_size / min(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _same_shape(items: list[tuple[float, float, np.ndarray]]) -> bool:
    shape = items[0][2].shape
    return all(f.shape == shape for _, _, f in items)


def _stack_resized(items: list[tuple[float, float, np.ndarray]]) -> np.ndarray:
    # A source that changed resolution mid-window (a webcam renegotiating): match the newest.
    import cv2

    h, w = items[-1][2].shape[:2]
    return np.stack([f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)) for _, _, f in items])


def _to_model_rate(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate == MODEL_SAMPLE_RATE:
        return samples
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(samples), sample_rate, MODEL_SAMPLE_RATE)
    return out.numpy().astype(np.float32, copy=False)
