"""Helpers for the training-tab tests: a tiny generated dataset and event waiting.

(Named ``test_train_*`` to sit with the tests it serves; it holds no tests itself.)
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square")


def write_clip(
    path: Path,
    *,
    kind: int,
    seconds: float = 1.0,
    size: int = 64,
    fps: int = 10,
    audio: bool = True,
    seed: int = 0,
) -> Path:
    """Writes a short H.264 (+ AAC) mp4: a bright blob moving left (kind 0) or right (1)."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        frames = int(seconds * fps)
        for i in range(frames):
            image = (rng.random((size, size, 3)) * 40).astype(np.uint8)
            x = int((i / frames) * (size - 16)) if kind else int((1 - i / frames) * (size - 16))
            image[size // 2 - 8 : size // 2 + 8, x : x + 16] = (255, 200, 50) if kind else (50, 200, 255)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            n = int(seconds * 16000)
            t = np.arange(n) / 16000.0
            tone = 0.3 * np.sin(2 * math.pi * (440 if kind else 880) * t) + 0.01 * rng.standard_normal(n)
            tone = tone.astype(np.float32)
            for start in range(0, n, 1024):
                chunk = tone[start : start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                frame.sample_rate = 16000
                frame.pts = start
                frame.time_base = Fraction(1, 16000)
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def make_dataset(root: Path, per_class: int = 4, *, broken: bool = False, silent: bool = False) -> Path:
    """A folder-per-class dataset of ``per_class`` clips per class (2 classes).

    ``broken`` adds an unreadable ``.mp4`` and ``silent`` one clip without audio.
    """
    for label_id, label in enumerate(CLASSES):
        for i in range(per_class):
            write_clip(root / label / f"{label}_{i}.mp4", kind=label_id, seed=10 * label_id + i)
    if silent:
        write_clip(root / CLASSES[0] / "silent.mp4", kind=0, audio=False, seed=99)
    if broken:
        (root / CLASSES[1] / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    return root
