"""A loaded model and its streaming engine, as the player's inference worker uses them.

Lives entirely on the inference worker's thread; only its :class:`ModelInfo` and the
results leave it.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from imd_app.types import ModelInfo, ModelSpec
from imd_core.errors import CheckpointError
from imd_core.inference.results import WindowResult

log = logging.getLogger(__name__)


MIN_WINDOW_SECONDS = 0.5  # shorter tails of a file get no window of their own
LIVE_HOP_SECONDS = 0.2  # 5 windows/s when the CPU keeps up; the newest window wins when it does not


def inference_threads() -> int:
    """Torch CPU threads for the app: all cores but one, which stays free for decoding and the GUI."""
    return max(1, (os.cpu_count() or 2) - 1)


def default_window(audio_seconds: float) -> tuple[float, float]:
    """Window and hop for live scores: the model's audio length (1 to 4 s), a new window every 0.2 s."""
    window = float(min(max(audio_seconds, 1.0), 4.0))
    return window, min(LIVE_HOP_SECONDS, window)


def model_info(predictor, spec: ModelSpec) -> ModelInfo:
    """What the model manager shows about a :class:`~imd_core.inference.predictor.Predictor`'s model."""
    model = predictor.model
    cfg = predictor.config
    savld = model.savld
    mapping: tuple[tuple[str, tuple[str, ...]], ...] = ()
    k = 0
    if savld is not None:
        k = int(savld.k)
        mapping = tuple((v, tuple(e["label"] for e in entries)) for v, entries in savld.mapping.items())
    tagger = model.tagger_name
    return ModelInfo(
        folder=spec.folder,
        device=str(predictor.device),
        size=str(cfg.size),
        parameters=int(sum(p.numel() for p in model.parameters())),
        labels=tuple(cfg.labels),
        tagger=str(tagger),
        audio_labels=len(model.audio_labels),
        savld_top_k=k,
        savld=mapping,
        num_frames=int(cfg.num_frames),
        image_size=int(cfg.image_size),
        audio_seconds=float(cfg.audio_seconds),
        relevance_threshold=float(predictor.relevance_threshold),
    )


class EngineSession:
    """A :class:`Predictor` plus a :class:`StreamingEngine` fed with media-timeline times.

    The engine aligns windows to the first frame after a reset and reports window times
    from there; this class adds that first frame's media time back, so results sit on
    the media timeline (the same axis as the seek bar).
    """

    def __init__(
        self, predictor, spec: ModelSpec, window: float | None = None, hop: float | None = None
    ) -> None:
        self.predictor = predictor
        self.info = model_info(predictor, spec)
        w, h = default_window(self.info.audio_seconds)
        self.full_window = window or w
        self.full_hop = hop or h
        self.source = ""
        self._make_engine(self.full_window, self.full_hop)
        self._first_time: float | None = None

    def _make_engine(self, window: float, hop: float) -> None:
        from imd_core.inference.streaming import StreamingEngine

        self.window, self.hop = window, hop
        self.engine = StreamingEngine(self.predictor, window=window, hop=hop, source=self.source)

    @classmethod
    def load(cls, spec: ModelSpec) -> EngineSession:
        """Loads the model folder on ``spec.device``.

        Raises:
            CheckpointError: the folder is missing, incomplete or incompatible.
            DeviceError: the device is not available.
        """
        from imd_core.inference.predictor import Predictor

        if not spec.folder.is_dir():
            raise CheckpointError(f"{spec.folder} is not a folder; choose a model folder holding config.json")
        predictor = Predictor(spec.folder, device=spec.device, threads=inference_threads(), batch_size=1)
        log.info("loaded model %s on %s", spec.folder, predictor.device)
        return cls(predictor, spec)

    def reset(self, source: str, start_time: float = 0.0, duration: float = 0.0, fps: float = 0.0) -> None:
        """A new source or a seek. A file shorter than the window (or its rest after a seek
        is) gets one window spanning what is left, as ``imd predict`` treats short clips."""
        self.source = source
        window = self.full_window
        if duration > 0:
            frame = 1.0 / fps if fps > 0 else 0.04
            left = duration - start_time - 1.5 * frame  # the last frame's time bounds a window's end
            if left < window:
                window = max(left, MIN_WINDOW_SECONDS)
        if abs(window - self.window) > 1e-6:
            self._make_engine(window, min(self.full_hop, window))
        else:
            self.engine.source = source
            self.engine.reset()
        self._first_time = None

    def push_frame(self, t: float, rgb: np.ndarray) -> None:
        if self._first_time is None:
            self._first_time = t
        self.engine.push_frame(rgb, t)

    def push_audio(self, t: float, samples: np.ndarray, sample_rate: int) -> None:
        self.engine.push_audio(samples, t, sample_rate)

    @property
    def skipped(self) -> int:
        return self.engine.stats.windows_skipped

    def poll(self) -> list[WindowResult]:
        """Runs the newest due window, if any; results carry media-timeline times."""
        result = self.engine.run_once()
        if result is None:
            return []
        offset = self._first_time or 0.0
        import dataclasses

        return [dataclasses.replace(result, start=result.start + offset, end=result.end + offset)]
