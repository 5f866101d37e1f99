"""Decoding a time range of an audio stream into float32 mono at a fixed rate."""

from __future__ import annotations

import functools
import logging
import math

import av
import numpy as np

from imd_core.media.probe import Watchdog, one_line

logger = logging.getLogger(__name__)


_SAMPLE_TYPES = {
    "u8": (np.uint8, 128.0, 128.0),
    "s16": (np.int16, 0.0, 32768.0),
    "s32": (np.int32, 0.0, 2.0**31),
    "s64": (np.int64, 0.0, 2.0**63),
    "flt": (np.float32, 0.0, 1.0),
    "dbl": (np.float64, 0.0, 1.0),
}


def _mono(frame) -> np.ndarray:
    """One decoded audio frame down-mixed to float32 mono (samples,), any sample format.

    Reads the plane buffers directly: per-frame ``to_ndarray`` costs more than the
    decode itself for small AAC frames.
    """
    fmt = frame.format
    dtype, offset, scale = _SAMPLE_TYPES[fmt.name.rstrip("p")]
    n = frame.samples
    channels = len(frame.layout.channels) or 1
    if fmt.is_planar:
        planes = frame.planes
        acc = np.frombuffer(planes[0], dtype, count=n).astype(np.float32)
        for plane in planes[1:channels]:
            acc += np.frombuffer(plane, dtype, count=n)
    else:
        inter = np.frombuffer(frame.planes[0], dtype, count=n * channels)
        acc = (
            inter.reshape(n, channels).sum(axis=1, dtype=np.float32)
            if channels > 1
            else inter.astype(np.float32)
        )
    if offset:
        acc -= offset * channels
    acc *= 1.0 / (scale * channels)
    return acc


class _Mixdown:
    """Collects decoded audio frames and down-mixes them to float32 mono in large blocks.

    Planar frames (AAC, Opus, Vorbis, MP3 decode to ``fltp``) are copied plane by plane
    into a per-channel block and mixed once per block, which costs about a third of
    mixing every 1024-sample frame on its own; the arithmetic is the same, so the output
    is identical. Packed frames (PCM) go through :func:`_mono` one by one (they are large).
    """

    def __init__(self, block_seconds: float) -> None:
        self.block_seconds = block_seconds
        self.chunks: list[np.ndarray] = []
        self.buf: np.ndarray | None = None  # (channels, block) in the frames' sample type
        self.rows: list[memoryview] = []
        self.fmt = ""
        self.fill = 0

    def add(self, frame) -> None:
        fmt = frame.format
        if not fmt.is_planar:
            self._mix()
            self.chunks.append(_mono(frame))
            return
        planes = frame.planes
        n = frame.samples
        buf = self.buf
        if buf is None or fmt.name != self.fmt or len(planes) != len(buf) or self.fill + n > buf.shape[1]:
            self._mix()
            block = max(n, round(self.block_seconds * (frame.sample_rate or 48000)))
            buf = self.buf = np.empty((len(planes), block), _SAMPLE_TYPES[fmt.name.rstrip("p")][0])
            self.rows = [memoryview(row).cast("B") for row in buf]  # byte views: a plain copy per plane
            self.fmt = fmt.name
        size = buf.itemsize
        lo, hi = self.fill * size, (self.fill + n) * size
        for row, plane in zip(self.rows, planes, strict=True):
            row[lo:hi] = memoryview(plane)[: hi - lo]
        self.fill += n

    def _mix(self) -> None:
        if self.buf is not None and self.fill:
            _, offset, scale = _SAMPLE_TYPES[self.fmt.rstrip("p")]
            channels = len(self.buf)
            acc = self.buf[0, : self.fill].astype(np.float32)
            for c in range(1, channels):
                acc += self.buf[c, : self.fill]
            if offset:
                acc -= offset * channels
            acc *= 1.0 / (scale * channels)
            self.chunks.append(acc)
        self.buf, self.fill = None, 0

    def result(self) -> np.ndarray:
        """float32 (samples,) of everything added."""
        self._mix()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)


# torchaudio's default sinc resampler (``torchaudio.functional.resample``: Hann window,
# 6 zero crossings, roll-off 0.99), in numpy: decoding never needs torch, so a decode
# sandbox starts without it (~250 MB and seconds less per process).
_ZERO_CROSSINGS, _ROLLOFF = 6, 0.99


@functools.lru_cache(maxsize=8)
def _resample_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """torchaudio's ``_get_sinc_resample_kernel`` for reduced rates: the float64 kernel
    ``(new, 2 * width + orig)`` and its ``width``."""
    base = min(orig, new) * _ROLLOFF
    width = math.ceil(_ZERO_CROSSINGS * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx) * base
    t = np.clip(t, -_ZERO_CROSSINGS, _ZERO_CROSSINGS)
    window = np.cos(t * math.pi / _ZERO_CROSSINGS / 2) ** 2
    t *= math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.where(t == 0, 1.0, np.sin(t) / t)
    return kernel * window * (base / orig), width


def _resample(mono: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """Band-limited resampling of one whole mono signal: torchaudio's result (within 1e-5)
    without torch. A strided view of the padded signal times the kernel: one matrix product,
    in float64 so that a sample does not depend on how long the signal is (float32 BLAS
    blocks by size; a kept sub-range must give the very samples of the whole range)."""
    if rate == sample_rate or mono.size == 0:
        return mono
    g = math.gcd(int(rate), int(sample_rate))
    orig, new = int(rate) // g, int(sample_rate) // g
    kernel, width = _resample_kernel(orig, new)
    padded = np.pad(np.asarray(mono, np.float64), (width, width + orig))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1])[::orig]
    out = (frames @ kernel.T).reshape(-1)
    return np.ascontiguousarray(out[: _resampled_length(mono.size, rate, sample_rate)], dtype=np.float32)


# Seconds decoded on each side of a kept range (``keep``): the decoder's overlap and the
# resampler's kernel need a little signal beyond the edges to give the same samples.
KEEP_MARGIN = 1.0


def decode_audio_range(
    container,
    a,
    start: float,
    end: float,
    t0: float,
    sample_rate: int,
    dog: Watchdog,
    keep: tuple[float, float] | None = None,
) -> tuple[np.ndarray, tuple[float, float], int]:
    """Audio of ``[start, end)`` as float32 mono at ``sample_rate`` plus its real extent.

    Args:
        keep: ``(k0, k1)`` inside ``[start, end)``: decode the whole range (the extent
            still covers all of it) but keep only the samples of ``[k0, k1)``, so memory
            does not grow with the range's length. ``None`` keeps everything.

    Returns:
        ``(samples, extent, damaged_packets)``: samples float32 covering ``keep`` (or
        ``[start, end)``) exactly, zero where there is no sound; ``extent`` ``(a, b)``
        seconds of ``[start, end)`` really covered (``b <= a``: none); the number of
        packets the decoder rejected.
    """
    k0, k1 = keep if keep is not None else (start, end)
    n_full = max(0, round((end - start) * sample_rate))
    out = np.zeros(max(0, round((k1 - k0) * sample_rate)), np.float32)
    tb = float(a.time_base) if a.time_base else 0.0
    try:  # always: the video pass has moved the read position
        target = int(max(0.0, start + t0 - 0.2) / tb) if tb and start > 0.5 else 0
        container.seek(target, stream=a if target else None, backward=True)
    except av.error.FFmpegError:
        container.seek(0)
    mix = _Mixdown(min(30.0, k1 - k0 + 2 * KEEP_MARGIN + 0.5))
    first_time = None  # of the range's first sample
    kept_from = None  # native samples from first_time to the first kept one
    total = damaged = 0  # native samples from first_time on; rejected packets
    rate = a.codec_context.sample_rate
    cc = a.codec_context
    done = False
    try:
        for packet in container.demux(a):
            dog.check()
            try:
                frames = cc.decode(packet)
            except av.error.FFmpegError:
                damaged += 1
                continue  # a damaged packet: the rest of the stream still counts
            for frame in frames:
                ftime = frame.pts * tb - t0 if frame.pts is not None and tb else None
                rate = frame.sample_rate or rate
                if first_time is None:
                    if ftime is not None and ftime + frame.samples / rate < start:
                        continue  # before the range (the seek lands early on purpose)
                    first_time = ftime if ftime is not None else 0.0
                if (ftime if ftime is not None else first_time) > end:
                    done = True
                    break
                # Time by sample count, as the output places them (contiguous samples).
                t_frame = first_time + total / rate
                if keep is None or (
                    t_frame + frame.samples / rate >= k0 - KEEP_MARGIN and t_frame <= k1 + KEEP_MARGIN
                ):
                    if kept_from is None:
                        kept_from = total
                    mix.add(frame)
                total += frame.samples
            if done:
                break
    except av.error.FFmpegError as exc:  # the audio read so far still counts: a warning
        logger.info("%s: audio demuxing stopped early (%s)", container.name, one_line(exc))
        damaged += 1
    mono = mix.result()
    if not total or not rate or first_time is None:
        return out, (start, start), damaged
    # Contiguous samples from first_time on (gaps inside a stream are rare enough to ignore).
    n_res = _resampled_length(total, rate, sample_rate)
    offset = round((first_time - start) * sample_rate)  # of the whole resampled signal in [start, end)
    src0, dst0 = max(0, -offset), max(0, offset)
    n = min(n_res - src0, n_full - dst0)
    extent = (start, start) if n <= 0 else (start + dst0 / sample_rate, start + (dst0 + n) / sample_rate)
    if not mono.size or n <= 0:
        return out, extent, damaged
    # The kept samples start on a sample that the whole signal's resampling grid shares
    # (a multiple of rate / gcd), so they resample to exactly the same output samples.
    step = rate // math.gcd(int(rate), int(sample_rate))
    skip = (-kept_from) % step
    mono = _resample(mono[skip:], rate, sample_rate)
    res0 = (kept_from + skip) * sample_rate // rate  # index of mono[0] in the whole resampled signal
    # whole-signal index i sits at output index i + offset - round((k0 - start) * sample_rate)
    shift = offset + res0 - round((k0 - start) * sample_rate)
    lo = max(0, -shift, src0 - res0)
    hi = min(len(mono), len(out) - shift, src0 + n - res0)
    if hi > lo:
        out[lo + shift : hi + shift] = mono[lo:hi]
    return out, extent, damaged


def _resampled_length(samples: int, rate: int, sample_rate: int) -> int:
    """Samples :func:`_resample` returns for ``samples`` input ones (a ceil, as torchaudio)."""
    if rate == sample_rate:
        return samples
    g = math.gcd(int(rate), int(sample_rate))
    return -(-samples * (sample_rate // g) // (rate // g))
