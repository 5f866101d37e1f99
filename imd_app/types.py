"""Frozen values that cross threads (with numpy arrays and ``QImage``, the only things that do).

Workers build these on their own threads and hand them to the GUI thread through queued
signals; nothing in here is ever mutated after construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from imd_core.inference.results import WindowResult

DeviceName = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and where: a checkpoint folder and a compute device."""

    folder: Path
    device: DeviceName = "cpu"


@dataclass(frozen=True)
class ModelInfo:
    """What the model manager shows about a loaded model."""

    folder: Path
    device: str
    size: str
    parameters: int
    labels: tuple[str, ...]
    tagger: str
    audio_labels: int
    savld_top_k: int
    savld: tuple[tuple[str, tuple[str, ...]], ...] = ()
    num_frames: int = 0
    image_size: int = 0
    audio_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass(frozen=True)
class VideoFrame:
    """One decoded video frame on the media timeline.

    Attributes:
        time: presentation time in seconds on the media timeline.
        rgb: uint8 array (H, W, 3), what the model sees.
        image: a ``QImage`` sharing nothing with ``rgb`` (built on the decode thread).
    """

    time: float
    rgb: np.ndarray
    image: object  # QImage; typed loosely so this module imports without Qt


@dataclass(frozen=True)
class MediaOpened:
    """What the decode worker learned when it opened a source."""

    source: str
    kind: Literal["file", "webcam"]
    duration: float  # seconds; 0 for a live source
    fps: float
    width: int
    height: int
    has_audio: bool


@dataclass(frozen=True)
class BatchRow:
    """One window's result in the batch table: an ``imd predict`` result plus the clip length
    and the file's warnings (e.g. ``"3 damaged packets skipped"``, as ``imd predict`` gives them)."""

    result: WindowResult
    duration: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveResult:
    """One streaming window's result as the live panel shows it.

    Attributes:
        start, end: the window on the media timeline (seconds).
        top: the five best (label, score) pairs.
        scores: float32 (C,) every class's score, in the model's label order.
        tags: the AST's best (AudioSet label, score) pairs.
        relevance: the relevance network's probability that the audio is relevant.
        threshold: the probability under which audio is dropped.
        audio_present: whether the window had any audio.
        dropped: whether the model dropped the audio.
        savld_iou: IoU of the tags with the SAVLD labels of the top-1 class (None if unknown).
        reason: the audio decision in words.
        latency: seconds from the window's last sample to the result.
        skipped: windows skipped so far because inference was slower than real time.
        confident: False when the model is not confident of any action (its calibrated
            threshold); the panel then says "No confident action" above the bars.
    """

    start: float
    end: float
    top: tuple[tuple[str, float], ...]
    scores: np.ndarray
    tags: tuple[tuple[str, float], ...]
    relevance: float | None
    threshold: float
    audio_present: bool
    dropped: bool
    savld_iou: float | None
    reason: str
    latency: float
    skipped: int = 0
    confident: bool = True


@dataclass(frozen=True)
class InferenceStats:
    """Rolling inference statistics for the status bar and the live panel."""

    rate: float  # windows per second over the last few seconds
    latency: float  # seconds, latest result
    skipped: int
