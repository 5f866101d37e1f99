"""Frozen values that cross threads (with numpy arrays and ``QImage``, the only things that do).

Workers build these on their own threads and hand them to the GUI thread through queued
signals; nothing in here is ever mutated after construction. A window's result is
``imd_core``'s :class:`~imd_core.inference.results.WindowResult`, for the live panel as
for the batch tab.
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
    relevance_threshold: float = 0.0  # what the live panel compares each window's relevance with

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
class InferenceStats:
    """Rolling inference statistics for the status bar and the live panel."""

    rate: float  # windows per second over the last few seconds
    latency: float  # seconds, latest result
    skipped: int
