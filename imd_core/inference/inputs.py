"""Which files to classify, and which windows of each.

``imd predict a.mp4 folder/`` takes files as given (whatever their extension: the user
named them) and walks folders recursively for media extensions, in sorted order so that
every run -- and every torchrun rank -- sees the same list.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from imd_core.errors import ConfigError
from imd_core.media.walk import walk_media

logger = logging.getLogger(__name__)

MEDIA_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp", ".ogv"}
)


@dataclasses.dataclass(frozen=True)
class InputError:
    """An input that cannot be processed at all, reported as ``PATH: reason``."""

    path: str
    reason: str


def is_media_file(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[InputError]]:
    """Expands files and folders into an ordered list of media files.

    Files keep the order given; each folder contributes its media files (recursively,
    hidden entries skipped) in sorted order. A path given twice is processed once.

    Returns:
        ``(files, errors)``: errors are paths that do not exist or folders without media.
    """
    files: list[Path] = []
    errors: list[InputError] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in paths:
        if str(raw).strip() == "":  # Path("") is "." and would scan the current folder
            errors.append(InputError(str(raw), "empty path; name a video file or a folder"))
            continue
        p = Path(raw)
        if p.is_dir():
            # each real folder once (a link loop ends), hidden entries left out
            found, skipped = walk_media(p, is_media_file)
            for s in skipped:  # a broken link, a folder named x.mp4, ...: said, not dropped
                logger.warning("skipped %s: %s", s.path, s.reason)
            if not found:
                exts = " ".join(sorted(MEDIA_EXTENSIONS))
                errors.append(
                    InputError(str(raw), f"no media files found in this folder (looked for {exts})")
                )
            for f in found:
                add(f)
        elif p.is_file():
            add(p)
        elif p.exists():
            errors.append(InputError(str(raw), "not a regular file or folder"))
        else:
            errors.append(InputError(str(raw), "no such file or folder"))
    return files, errors


def plan_windows(
    duration: float, window: float | None = None, hop: float | None = None
) -> list[tuple[float, float]]:
    """The ``(start, end)`` windows of a clip of ``duration`` seconds.

    Without ``window`` the whole clip is one window. With it, windows of ``window``
    seconds start every ``hop`` seconds (``hop`` defaults to ``window``: no overlap); when
    they leave a tail (> 10 % of a window) uncovered, one more window ends exactly at the end (as
    ``audio_features.window_starts`` does), so every second of the file is classified. A
    clip shorter than one window gives one window of the whole clip.
    """
    if not math.isfinite(duration) or duration <= 0:
        raise ConfigError(f"cannot plan windows for a clip of duration {duration!r} s")
    if window is None:
        if hop is not None:
            raise ConfigError("--hop needs --window (without --window the whole clip is one window)")
        return [(0.0, float(duration))]
    if window <= 0:
        raise ConfigError(f"--window must be > 0 seconds, got {window}")
    hop = window if hop is None else hop
    if hop <= 0:
        raise ConfigError(f"--hop must be > 0 seconds, got {hop}")
    if duration <= window:
        return [(0.0, float(duration))]
    # Tolerate float noise so that a 10.0 s clip holds exactly five 2.0 s windows.
    count = int(math.floor((duration - window) / hop + 1e-6)) + 1
    out = [(round(i * hop, 6), round(i * hop + window, 6)) for i in range(count)]
    if duration - out[-1][1] > 0.1 * window:  # a few ms of container slack is not a tail
        out.append((round(duration - window, 6), round(float(duration), 6)))
    return out


def shard(items: Sequence[Path], rank: int, world_size: int) -> list[int]:
    """Indices of ``items`` that ``rank`` of ``world_size`` processes (round robin).

    Round robin rather than contiguous blocks: folders are sorted, and neighbouring
    files tend to have similar lengths, so this balances the ranks' work.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"bad rank {rank} for world size {world_size}")
    return list(range(rank, len(items), world_size))


@dataclasses.dataclass(frozen=True, eq=False)
class WindowInput:
    """One window's raw media, ready for preprocessing.

    Attributes:
        frames: uint8 ``(N, H, W, 3)`` RGB frames inside the window, in time order (any
            count >= 1; the predictor samples the model's ``num_frames`` from them).
        audio: float32 ``(S,)`` mono waveform at 16 kHz covering the window, or ``None``
            when the source has no audio there.
        path: the file (or live source name) the window comes from.
        start: window start, seconds from the beginning of the source.
        end: window end, seconds.
        damaged_packets: packets skipped while decoding this window's stretch of the
            file (counted once, on the first window of a decode): a warning, not an error.
    """

    frames: np.ndarray
    audio: np.ndarray | None
    path: str
    start: float
    end: float
    damaged_packets: int = 0
