"""Writes small real media files with PyAV for tests (and benchmarks): no binary fixtures.

Every engineer's tests may use it::

    from tests.media_factory import write_clip, write_broken, frame_index_of

    path = write_clip(tmp_path / "a.mp4", seconds=2.0, fps=25, width=64, height=48)

Frames of the default ``pattern="index"`` encode their own index as flat colours that
survive lossy compression, so a test can tell which source frame a decoder returned
(:func:`frame_index_of`). The top-left quarter of every frame is a white marker, which
makes rotations and flips visible. ``pattern="texture"`` is a panning textured scene with
a moving disc, compressing like ordinary footage (for timing benchmarks).

Audio is a sine (``audio_hz``) of amplitude 0.5 on every channel, or with
``audio_pattern="chirp"`` a rising chirp (:func:`chirp`) whose alignment a test can
check without the ambiguity of a periodic signal.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Container extension -> (video codec, audio codec) used when none is given.
DEFAULT_CODECS: dict[str, tuple[str, str]] = {
    ".mp4": ("h264", "aac"),
    ".m4v": ("h264", "aac"),
    ".mov": ("h264", "aac"),
    ".mkv": ("libvpx-vp9", "libopus"),
    ".webm": ("libvpx", "libopus"),
    ".avi": ("mjpeg", "pcm_s16le"),
}

BROKEN_KINDS = (
    "empty",
    "truncated",
    "truncated-stream",
    "corrupt-header",
    "not-media",
    "garbage",
    "directory",
    "dangling-link",
    "missing",
)

_STEP = 14  # colour step per index digit; survives yuv420 + lossy coding


def frame_colour(index: int) -> tuple[int, int, int]:
    """The flat RGB colour of frame ``index`` for ``pattern="index"`` (unique below 256)."""
    return (16 + (index % 16) * _STEP, 16 + (index // 16 % 16) * _STEP, 128)


def frame_index_of(frame: np.ndarray) -> int:
    """Recovers the frame index from a decoded ``pattern="index"`` frame (H, W, 3) uint8.

    Reads the bottom-right quarter, away from the white marker, so it works on
    rotated or flipped frames only if the marker is not there; use it on unrotated ones.
    """
    h, w = frame.shape[:2]
    patch = frame[h // 2 :, w // 2 :].reshape(-1, 3).astype(np.float64)
    r, g = np.median(patch[:, 0]), np.median(patch[:, 1])
    return int(round((r - 16) / _STEP)) + 16 * int(round((g - 16) / _STEP))


def chirp(t: np.ndarray, f0: float = 300.0, rate: float = 200.0) -> np.ndarray:
    """The ``audio_pattern="chirp"`` signal at times ``t`` (seconds): 0.5 sin, f0 + rate*t Hz."""
    return 0.5 * np.sin(2 * np.pi * (f0 * t + 0.5 * rate * t * t))


def _index_image(index: int, width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = frame_colour(index)
    img[: max(1, height // 4), : max(1, width // 4)] = 255
    return img


class _Texture:
    """A panning smooth-noise scene with a moving disc (compresses like real footage)."""

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        small = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
        big = np.kron(small, np.ones((8, 8, 1), np.float32))  # blocky noise
        fine = rng.normal(0, 12, big.shape).astype(np.float32)
        self.base = np.clip(big * 0.7 + fine + 30, 0, 255).astype(np.uint8)
        self.width, self.height = width, height
        yy, xx = np.mgrid[:height, :width]
        self.yy, self.xx = yy, xx

    def frame(self, t: float) -> np.ndarray:
        dx = int(t * 40) % 8
        dy = int(t * 15) % 8
        img = self.base[dy : dy + self.height, dx : dx + self.width].copy()
        cx = (0.5 + 0.35 * np.sin(t * 1.3)) * self.width
        cy = (0.5 + 0.3 * np.cos(t * 0.9)) * self.height
        disc = (self.xx - cx) ** 2 + (self.yy - cy) ** 2 < (self.height / 6) ** 2
        img[disc] = (220, 60, 40)
        return img


def write_clip(
    path: str | os.PathLike,
    seconds: float = 2.0,
    *,
    fps: float = 25.0,
    width: int = 64,
    height: int = 48,
    audio_hz: float | None = 440.0,
    audio_pattern: str = "sine",
    sample_rate: int | None = None,
    channels: int = 2,
    audio_seconds: float | None = None,
    video: bool = True,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    pix_fmt: str | None = None,
    pattern: str = "index",
    rotation: int = 0,
    frame_times: Sequence[float] | None = None,
    gop: int | None = None,
    crf: int | None = None,
    faststart: bool = False,
    seed: int = 0,
) -> Path:
    """Writes a real media file and returns its path.

    Args:
        path: output file; its extension picks the container and default codecs
            (see ``DEFAULT_CODECS``).
        seconds: video duration.
        fps: constant frame rate (ignored when ``frame_times`` is given).
        width, height: frame size (odd sizes need a codec/pix_fmt that allows them,
            e.g. ``pix_fmt="yuv444p"`` for h264 or mjpeg).
        audio_hz: sine frequency, or ``None`` for a file without an audio stream.
        audio_pattern: ``"sine"`` or ``"chirp"`` (see :func:`chirp`; ignores ``audio_hz``).
        sample_rate, channels: audio format written to the file (sample rate default:
            44100, or 48000 for Opus, which allows only 8/12/16/24/48 kHz).
        audio_seconds: audio duration when it differs from ``seconds``.
        video: ``False`` writes an audio-only file.
        video_codec, audio_codec: override the defaults for the extension.
        pix_fmt: encoder pixel format (default: the codec's first).
        pattern: ``"index"`` (frames encode their index) or ``"texture"``.
        rotation: display-matrix rotation in degrees counter-clockwise (0, 90, 180, 270).
        frame_times: explicit presentation times in seconds (variable frame rate).
        gop: key-frame interval in frames (encoder default when ``None``).
        crf: x264 constant rate factor (``None``: encoder default).
        faststart: mp4/mov only: put the index at the front of the file.
        seed: texture seed.
    """
    path = Path(path)
    ext = path.suffix.lower()
    vcodec_default, acodec_default = DEFAULT_CODECS.get(ext, ("h264", "aac"))
    vcodec = video_codec or vcodec_default
    acodec = audio_codec or acodec_default
    options = {"movflags": "faststart"} if faststart else {}
    times = list(frame_times) if frame_times is not None else [i / fps for i in range(round(seconds * fps))]

    with av.open(str(path), "w", options=options) as out:
        vstream = astream = None
        if video:
            vstream = out.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
            vstream.width, vstream.height = width, height
            if pix_fmt:
                vstream.pix_fmt = pix_fmt
            elif vcodec == "mjpeg":
                vstream.pix_fmt = "yuvj420p" if width % 2 == 0 and height % 2 == 0 else "yuvj444p"
            if gop:
                vstream.codec_context.gop_size = gop
            opts = {}
            if crf is not None:
                opts["crf"] = str(crf)
            if vcodec in ("libvpx", "libvpx-vp9", "vp8", "vp9"):
                opts.update({"deadline": "realtime", "cpu-used": "8", "b": "400k"})
            vstream.codec_context.options = opts
            if frame_times is not None:
                vstream.time_base = Fraction(1, 1000)
                vstream.codec_context.time_base = Fraction(1, 1000)
            if rotation:
                vstream.set_display_rotation(rotation)
        if audio_hz is not None:
            if sample_rate is None:
                sample_rate = 48000 if "opus" in acodec else 44100
            astream = out.add_stream(acodec, rate=sample_rate)
            astream.layout = "mono" if channels == 1 else "stereo" if channels == 2 else f"{channels}c"
            if acodec == "vorbis":
                astream.codec_context.options = {"strict": "experimental"}
        texture = _Texture(width, height, seed) if pattern == "texture" else None

        if vstream is not None:
            for i, t in enumerate(times):
                img = texture.frame(t) if texture is not None else _index_image(i, width, height)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                if frame_times is not None:
                    frame.pts = round(t * 1000)
                    frame.time_base = Fraction(1, 1000)
                else:
                    frame.pts = i
                    frame.time_base = vstream.codec_context.time_base or Fraction(1, round(fps))
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode(None))

        if astream is not None:
            total = round((seconds if audio_seconds is None else audio_seconds) * sample_rate)
            block = 1024
            layout = astream.layout.name
            for start in range(0, total, block):
                n = min(block, total - start)
                t = (np.arange(start, start + n) / sample_rate).astype(np.float64)
                if audio_pattern == "chirp":
                    wave = chirp(t).astype(np.float32)
                else:
                    wave = (0.5 * np.sin(2 * np.pi * audio_hz * t)).astype(np.float32)
                planes = np.repeat(wave[None, :], channels, axis=0)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path


def write_broken(path: str | os.PathLike, kind: str) -> Path:
    """Creates an unreadable "media" file of the given kind (see ``BROKEN_KINDS``)."""
    path = Path(path)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind in ("truncated", "corrupt-header"):
        good = write_clip(path.with_name("_good_" + path.name), seconds=1.0)
        data = bytearray(good.read_bytes())
        good.unlink()
        if kind == "truncated":
            data = data[: len(data) * 2 // 5]  # mp4 index (moov) at the end is lost
        else:
            rng = np.random.default_rng(1)
            data[:256] = rng.integers(0, 256, 256, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif kind == "truncated-stream":
        # A container with its header in front: it opens, but its data stops early.
        faststart = path.suffix.lower() in (".mp4", ".m4v", ".mov")
        good = write_clip(path.with_name("_good_" + path.name), seconds=4.0, fps=10, faststart=faststart)
        data = good.read_bytes()
        good.unlink()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "not-media":
        path.write_text("path,label\nthis is a text file, not a video\n", encoding="utf-8")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling-link":
        path.symlink_to(path.with_name("does-not-exist-" + path.name))
    elif kind == "missing":
        pass
    else:
        raise ValueError(f"unknown broken kind {kind!r}; choose one of {BROKEN_KINDS}")
    return path


def write_still_image(path: str | os.PathLike, width: int = 64, height: int = 48) -> Path:
    """Writes a single PNG picture under ``path`` whatever its extension (``x.mp4`` too)."""
    path = Path(path)
    with av.open(str(path), "w", format="image2", options={"update": "1"}) as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        frame = av.VideoFrame.from_ndarray(_index_image(0, width, height), format="rgb24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_damaged(path: str | os.PathLike, seconds: float = 4.0) -> Path:
    """Writes an mp4 whose header is intact but some packets in the middle are garbage.

    The decoder rejects a few packets (a 4 s clip: 4 with PyAV 18 / FFmpeg 8) and decodes
    the rest, so the file is usable with a warning.
    """
    path = Path(path)
    write_clip(path, seconds=seconds, fps=10, pattern="texture", gop=5, faststart=True)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for frac in (0.4, 0.6):
        i = int(len(data) * frac)
        data[i : i + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path
