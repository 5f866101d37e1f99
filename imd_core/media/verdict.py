"""One verdict per file: the rules every front end applies to a media file.

Every front end asks :func:`media_problem`, so a file is rejected everywhere or nowhere,
with the same reason: no video stream, a still image, or truncated. Damaged packets the
decoder skips are not a verdict, only a warning (:func:`damaged_warning`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no PyAV import for the callers that only word a warning
    from imd_core.media.probe import MediaInfo

MIN_VIDEO_FRAMES = 2
TRUNCATION_TOLERANCE = 0.5  # seconds; and at least 10 % of the claimed duration

# FFmpeg demuxers that read a single picture (``png_pipe``, ``jpeg_pipe``, ... and ``image2``).
_IMAGE_DEMUXERS = ("image2", "image2pipe")

NO_VIDEO = "no video stream; IMD needs video (audio-only files are not supported)"


def is_still_image(info: MediaInfo, video_frames: int | None = None) -> bool:
    """Whether the file's video is a single picture rather than a moving image."""
    demuxer = info.container.split(",")[0]
    if demuxer in _IMAGE_DEMUXERS or demuxer.endswith("_pipe"):
        return True
    frames = video_frames if video_frames is not None else info.num_frames
    return frames is not None and frames < MIN_VIDEO_FRAMES


def truncation_problem(info: MediaInfo, video_end: float | None) -> str | None:
    """The truncation reason when the video really ends at ``video_end`` (``None``: not truncated)."""
    claimed = info.video_duration or info.duration
    if video_end is None or not claimed:
        return None
    if video_end < claimed - max(TRUNCATION_TOLERANCE, 0.1 * claimed):
        return (
            f"video data ends at {video_end:.2f} s but the file claims {claimed:.2f} s (truncated or damaged)"
        )
    return None


def media_problem(
    info: MediaInfo, *, video_frames: int | None = None, video_end: float | None = None
) -> str | None:
    """The one-line reason a file is unusable, or ``None`` when it is usable as far as known.

    Args:
        info: the file's headers (:func:`~imd_core.media.probe.media_info`).
        video_frames: video frames decoded from the whole file, when known (a scan).
        video_end: seconds where the decodable video really ends, when known (a scan, a
            decode that reached past it, the player at the end of the file).
    """
    if not info.has_video:
        return NO_VIDEO
    if is_still_image(info, video_frames):
        return (
            f"a still image ({info.video_codec or 'unknown'} picture), not a video; "
            f"IMD needs at least {MIN_VIDEO_FRAMES} video frames"
        )
    return truncation_problem(info, video_end)


def damaged_warning(damaged_packets: int) -> str | None:
    """The warning for packets skipped while decoding (``None`` when there were none)."""
    return f"{damaged_packets} damaged packets skipped" if damaged_packets else None


def strip_path(message: str, path: str) -> str:
    """The reason of a ``PATH: reason`` error message, for reports that print the path already.

    ``DecodeError`` messages start with the file's path as given or made absolute
    (:func:`~imd_core.media.probe.check_path`); either prefix is dropped.
    """
    for prefix in (os.path.abspath(path), path):
        if message.startswith(prefix + ": "):
            return message[len(prefix) + 2 :]
    return message
