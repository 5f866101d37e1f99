"""Decoding a whole file once, to tell whether it is usable (``imd data check``).

Every packet of the first video and the first audio stream is decoded (nothing is
converted), so damaged data anywhere in the file shows up; a file whose streams end
well before the duration its header claims is reported as truncated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import av

from imd_core.media.probe import (
    Watchdog,
    check_path,
    frame_rotation,
    media_info,
    one_line,
    open_media,
    video_stream,
)
from imd_core.media.sandbox import credible_seconds, extend_deadline

# A stream that ends this much before the claimed duration is truncated.
_TRUNCATION_TOLERANCE = 0.5  # seconds


@dataclass(frozen=True)
class MediaScan:
    """The result of decoding a whole file.

    Attributes:
        path: absolute path.
        duration: seconds the file claims (``None`` if it does not say).
        video_codec, audio_codec: decoder names (``None`` without that stream).
        width, height: displayed size.
        video_frames: frames decoded.
        video_end, audio_end: seconds where the decoded video / audio stop.
        audio_samples: audio samples decoded (native rate).
        damaged_packets: packets the decoders rejected.
        problem: ``None`` when the file is usable, else the one-line reason.
    """

    path: str
    duration: float | None
    video_codec: str | None
    audio_codec: str | None
    width: int
    height: int
    video_frames: int
    video_end: float | None
    audio_end: float | None
    audio_samples: int
    damaged_packets: int
    problem: str | None

    @property
    def has_audio(self) -> bool:
        return self.audio_samples > 0


def scan_media(path: str | os.PathLike, *, timeout: float = 120.0) -> MediaScan:
    """Decodes every video and audio packet of a file.

    The watchdog allows ``timeout`` seconds plus the duration the file claims (capped by
    what its size can hold), so long recordings are checked rather than timed out; in a
    :mod:`~imd_core.media.sandbox` the killing deadline moves with it.

    Raises:
        DecodeError: the file cannot be opened at all (missing, not media, ...), or
            the watchdog fired. Files that open but are bad come back with ``problem`` set.
    """
    p = check_path(path)
    dog = Watchdog(p, timeout)
    with open_media(p, dog) as container:
        vs = video_stream(container)
        a = container.streams.audio[0] if container.streams.audio else None
        if container.duration:  # decoding runs far faster than real time: a long file may
            extra = credible_seconds(p, container.duration / av.time_base)  # take its duration
            dog.extend(extra)
            extend_deadline(extra)
        t0 = container.start_time / av.time_base if container.start_time is not None else 0.0
        streams = [s for s in (vs, a) if s is not None]
        frames = samples = damaged = 0
        v_end = a_end = None
        rotation = 0
        stopped = None
        if streams:
            try:
                for packet in container.demux(streams):
                    dog.check()
                    try:
                        decoded = packet.decode()
                    except av.error.FFmpegError:
                        damaged += 1
                        continue
                    for frame in decoded:
                        if frame.pts is None:
                            continue
                        tb = packet.stream.time_base
                        t = float(frame.pts * tb) - t0
                        if packet.stream is vs:
                            if frames == 0:
                                rotation = frame_rotation(frame)
                            frames += 1
                            dur = float(frame.duration * tb) if frame.duration else 0.0
                            v_end = max(v_end or 0.0, t + dur)
                        else:
                            samples += frame.samples
                            a_end = max(a_end or 0.0, t + frame.samples / (frame.sample_rate or 1))
            except av.error.FFmpegError as exc:
                stopped = one_line(exc)
        info = media_info(p, container, rotation)

    problem = None
    if vs is None:
        problem = "no video stream"
    elif frames == 0:
        problem = f"no video frame could be decoded ({damaged} damaged packets)"
    elif stopped:
        problem = f"reading stopped at {max(v_end or 0, a_end or 0):.2f} s ({stopped})"
    else:
        claimed = info.duration
        reached = max(v_end or 0.0, a_end or 0.0)
        if claimed is not None and reached < claimed - max(_TRUNCATION_TOLERANCE, 0.1 * claimed):
            problem = (
                f"data ends at {reached:.2f} s but the file claims {claimed:.2f} s (truncated or damaged)"
            )
        elif (
            info.video_duration
            and v_end is not None
            and v_end < info.video_duration - max(_TRUNCATION_TOLERANCE, 0.1 * info.video_duration)
        ):
            problem = (
                f"video ends at {v_end:.2f} s but the file claims {info.video_duration:.2f} s (truncated)"
            )
        elif damaged > max(3, 0.05 * (frames + damaged)):
            problem = f"{damaged} damaged packets"
    return MediaScan(
        path=p,
        duration=info.duration,
        video_codec=info.video_codec,
        audio_codec=info.audio_codec if a is not None else None,
        width=info.width,
        height=info.height,
        video_frames=frames,
        video_end=v_end,
        audio_end=a_end,
        audio_samples=samples,
        damaged_packets=damaged,
        problem=problem,
    )
