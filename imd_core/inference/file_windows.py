"""Decoding a file into windows, once per stretch of the file rather than once per window.

Windows are grouped into chunks of at most ``chunk_seconds``, each decoded in one pass
that picks exactly the frames its windows sample: overlapping windows never decode twice
and an hour-long file never sits in memory. Torch-free, because a ``DecodeSandbox``
preloads this module.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import numpy as np

from imd_core.errors import DecodeError
from imd_core.inference.inputs import WindowInput, plan_windows
from imd_core.media.sandbox import credible_seconds, extend_deadline

log = logging.getLogger(__name__)

AUDIO_RATE = 16000
# The audio of a whole clip kept for the model: its centred stretch of this length (every
# model reads at most 60 s, the centred ``audio_seconds``; see ClipPreprocessor.audio_window).
WHOLE_CLIP_AUDIO_SECONDS = 60.0
# A window counts as having audio when real sound fills at least this fraction of it
# (the same rule as the streaming engine).
MIN_AUDIO_COVERAGE = 0.5


class FileWindows:
    """The planned windows of one file; iterating decodes and yields :class:`WindowInput`.

    Attributes:
        path: the file.
        duration: its length in seconds (for a whole-clip plan, known once iterated).
        windows: ``(start, end)`` pairs in seconds (empty for a whole-clip plan).
    """

    def __init__(
        self,
        path: Path,
        duration: float | None,
        windows: list[tuple[float, float]],
        *,
        whole_clip: bool,
        num_frames: int,
        frame_size: int,
        chunk_seconds: float,
        sample_times: Callable[[float, float], np.ndarray] | None = None,
    ) -> None:
        self.path = path
        self.duration = duration
        self.windows = windows
        self.whole_clip = whole_clip
        self.num_frames = num_frames
        self.frame_size = frame_size
        self.chunk_seconds = chunk_seconds
        self.sample_times = sample_times

    def __len__(self) -> int:
        return 1 if self.whole_clip else len(self.windows)

    def __iter__(self) -> Iterator[WindowInput]:
        from imd_core.media.decode import decode_clip, sample_times

        name = str(self.path)
        t = self.num_frames
        if self.whole_clip:
            clip = decode_clip(
                self.path, 0.0, None, num_frames=t, size=self.frame_size, audio_keep=whole_clip_audio_keep
            )
            _check_frames(clip.frames)
            self.duration = float(clip.end)
            audio = _audio_in(clip, clip.start, clip.end)
            yield WindowInput(frames=clip.frames, audio=audio, path=name, start=0.0, end=float(clip.end),
                              damaged_packets=clip.damaged_packets)  # fmt: skip
            return
        for c0, c1, members in self._chunks():
            # One decode per chunk: every window's T segment-centre frames (TSN test
            # sampling), each decoded frame shared by the overlapping windows that want it.
            pick = self.sample_times or (lambda s, e: sample_times(s, e, num_frames=t))
            times = np.concatenate([pick(s, e) for s, e in members])
            clip = decode_clip(self.path, c0, c1, times=times, size=self.frame_size)
            _check_frames(clip.frames)
            for i, (s, e) in enumerate(members):
                yield WindowInput(
                    frames=clip.frames[i * t : (i + 1) * t],
                    audio=_audio_in(clip, s, e),
                    path=name,
                    start=s,
                    end=e,
                    damaged_packets=clip.damaged_packets if i == 0 else 0,
                )

    def _chunks(self) -> Iterator[tuple[float, float, list[tuple[float, float]]]]:
        members: list[tuple[float, float]] = []
        for s, e in self.windows:
            if members and e - members[0][0] > self.chunk_seconds:
                yield members[0][0], members[-1][1], members
                members = []
            members.append((s, e))
        if members:
            yield members[0][0], members[-1][1], members


def open_file_windows(
    path: str | os.PathLike[str],
    *,
    window: float | None,
    hop: float | None,
    num_frames: int,
    frame_size: int,
    chunk_seconds: float = 60.0,
    sample_times: Callable[[float, float], np.ndarray] | None = None,
) -> FileWindows:
    """Probes ``path`` and plans its windows.

    Args:
        sample_times: ``(start, end) -> (num_frames,)`` frame times of a window (the
            preprocessor's test-time sampling); default: segment centres.

    Raises:
        DecodeError: the file is missing, unreadable or has no video stream.
        ConfigError: bad ``window``/``hop``.
    """
    from imd_core.media.decode import probe

    p = Path(path)
    if window is None:  # one window; decode_clip finds the duration itself (one open, not two)
        plan_windows(1.0, window, hop)
        return FileWindows(p, None, [], whole_clip=True, num_frames=num_frames, frame_size=frame_size,
                           chunk_seconds=chunk_seconds, sample_times=sample_times)  # fmt: skip
    from imd_core.media.verdict import media_problem

    info = probe(p)
    problem = media_problem(info)  # no video, a still image: the verdict every front end shares
    if problem:
        raise DecodeError(problem)
    duration = float(info.duration or 0.0)
    if not math.isfinite(duration) or duration <= 0:
        raise DecodeError("cannot tell the clip's duration; re-encode it (e.g. ffmpeg -i IN -c copy OUT.mp4)")
    windows = plan_windows(duration, window, hop)
    return FileWindows(
        p,
        duration,
        windows,
        whole_clip=False,
        num_frames=num_frames,
        frame_size=frame_size,
        chunk_seconds=max(chunk_seconds, window or 0.0),
        sample_times=sample_times,
    )


def decode_windows(
    path: str | os.PathLike[str],
    *,
    window: float | None,
    hop: float | None,
    num_frames: int,
    frame_size: int,
    chunk_seconds: float,
    sample_times: Callable[[float, float], np.ndarray] | None,
    bounded: bool = False,
) -> Generator[tuple[WindowInput, float], None, float | None]:
    """A file's windows, each with the fraction of the file's windows done so far; returns the
    clip's duration (as :class:`FileWindows` after iteration).

    ``bounded``: running as a sandbox job, whose deadline then grows by the duration the
    file credibly claims (a whole clip's decode reads all of its audio). A whole clip is
    probed for it; in-process nothing needs that probe.
    """
    fw = open_file_windows(path, window=window, hop=hop, num_frames=num_frames, frame_size=frame_size,
                           chunk_seconds=chunk_seconds, sample_times=sample_times)  # fmt: skip
    if bounded:
        extend_deadline(credible_seconds(path, _claimed_duration(fw) or 0.0))
    for i, item in enumerate(fw):
        yield item, (i + 1) / len(fw)
    return fw.duration


def _claimed_duration(fw: FileWindows) -> float | None:
    if fw.duration is not None:
        return fw.duration
    from imd_core.media.decode import probe

    try:
        return probe(fw.path).duration  # a whole clip's plan did not need it
    except Exception:  # noqa: BLE001 -- only the deadline needs it: the decode raises its own reason
        return None


def whole_clip_audio_keep(start: float, end: float) -> tuple[float, float] | None:
    """The centred ``WHOLE_CLIP_AUDIO_SECONDS`` of ``[start, end)`` (``None``: keep it all).

    Its sample count has the parity of the whole range's, so the model's centred
    ``audio_seconds`` inside it are the very samples it would take from the whole range
    (``(N - n) // 2 == (N - M) // 2 + (M - n) // 2`` when ``N - M`` is even).
    """
    n_all = round((end - start) * AUDIO_RATE)
    n_keep = round(WHOLE_CLIP_AUDIO_SECONDS * AUDIO_RATE)
    if n_all <= n_keep:
        return None
    n_keep += (n_all - n_keep) % 2
    k0 = start + ((n_all - n_keep) // 2) / AUDIO_RATE
    return k0, k0 + n_keep / AUDIO_RATE


def _check_frames(frames: np.ndarray | None) -> None:
    if frames is None or len(frames) == 0:
        raise DecodeError("no video frames could be decoded")


def _audio_in(clip: object, start: float, end: float) -> np.ndarray | None:
    """The clip's 16 kHz audio of ``[start, end)``, or ``None`` when real audio covers too little of it.

    ``clip.audio`` starts at ``clip.audio_start`` (``clip.start`` when unset) and is zero
    where the file has no sound; ``clip.audio_extent`` says where the sound really is.
    """
    audio, extent = getattr(clip, "audio", None), getattr(clip, "audio_extent", None)
    if audio is None or extent is None:
        return None
    covered = min(end, extent[1]) - max(start, extent[0])
    if covered < MIN_AUDIO_COVERAGE * (end - start):
        return None
    rate = int(getattr(clip, "sample_rate", AUDIO_RATE))
    a0 = getattr(clip, "audio_start", None)
    a0 = clip.start if a0 is None else a0
    i0 = max(0, round((start - a0) * rate))
    i1 = min(len(audio), round((end - a0) * rate))
    return np.asarray(audio[i0:i1], dtype=np.float32)
