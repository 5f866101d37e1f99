"""Rendering SynthAV clips to MP4 and writing the manifest.

Clip ``i`` of seed ``s`` draws from generators seeded with ``(s, i, ...)`` and x264 runs
single-threaded, so a config writes byte-identical files whatever the worker count; knobs
left at their defaults write what earlier versions wrote. ``spurious_correlation`` ties the
sound of ``irrelevant`` training clips to their class and changes nothing else.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imd_core.config_base import FrozenConfig
from imd_core.errors import ConfigError, DataError
from imd_core.synth import audio as A
from imd_core.synth.classes import ACTION_CLASSES, CLASS_TAGS, IRRELEVANT_TAGS, SILENCE_TAG, SPURIOUS_SOUNDS
from imd_core.synth.video import RENDERERS, Canvas, Events, background, occluders

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "label", "split", "audio_kind", "audio_tags")
# Knobs added after the first data sets: left out of synth_config.json at these defaults.
_NEW_KNOB_DEFAULTS = {"spurious_correlation": 0.0, "misleading_share": 0.25}


def kind_weights(misleading_share: float) -> dict[str, float]:
    """Shares of the non-relevant audio kinds: misleading ``m``, irrelevant:silent 4:1 of the rest.

    ``m = 0.25`` gives exactly ``{"irrelevant": 0.6, "misleading": 0.25, "silent": 0.15}``.
    """
    rest = 1.0 - misleading_share
    # rounding makes the default bit-identical to the literals (0.75 * 0.8 is 0.6000000000000001)
    return {
        "irrelevant": round(rest * 0.8, 12),
        "misleading": misleading_share,
        "silent": round(rest * 0.2, 12),
    }


@dataclass(frozen=True)
class SynthConfig(FrozenConfig):
    """What ``imd synth`` renders.

    Attributes:
        clips: number of clips.
        relevance: probability P that a clip's audio is its class's own sound.
        ambiguity: Q in [0, 1]: how visually ambiguous clips are (low contrast,
            occluders, motion blur, noise); each clip draws its own level around Q.
        seed: the data set's seed.
        size: frame width and height in pixels (even, for H.264 4:2:0).
        fps: frames per second.
        min_seconds, max_seconds: clip duration range.
        sample_rate: audio sample rate (16 kHz: what the AST front-end uses).
        val_fraction, test_fraction: split shares (the rest is ``train``).
        classes: the action classes to render (a subset of ``ACTION_CLASSES``).
        spurious_correlation: S in [0, 1], train split only: the probability that an
            ``irrelevant`` clip's sound is its class's fixed sound
            (``classes.SPURIOUS_SOUNDS``) rather than a uniform draw, so the soundtrack
            predicts the class in training but not in ``val``/``test`` (always drawn
            independently). P(sound = its class's sound) = S + (1 - S) / 4 in training,
            1/4 elsewhere. 0 (default): no correlation.
        misleading_share: M in [0, 1]: the share of ``misleading`` audio among the
            non-relevant clips; the rest is ``irrelevant`` and ``silent`` at 4:1.
            0.25 (default): irrelevant 60%, misleading 25%, silent 15%.
    """

    clips: int = 1000
    relevance: float = 0.5
    ambiguity: float = 0.3
    seed: int = 0
    size: int = 160
    fps: int = 25
    min_seconds: float = 2.0
    max_seconds: float = 4.0
    sample_rate: int = 16000
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    classes: tuple[str, ...] = ACTION_CLASSES
    spurious_correlation: float = 0.0
    misleading_share: float = 0.25

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise ConfigError("synth: --clips must be at least 1")
        if not 0.0 <= self.relevance <= 1.0:
            raise ConfigError(f"synth: --relevance must be in [0, 1], got {self.relevance}")
        if not 0.0 <= self.ambiguity <= 1.0:
            raise ConfigError(f"synth: --ambiguity must be in [0, 1], got {self.ambiguity}")
        if not 0.0 <= self.spurious_correlation <= 1.0:
            raise ConfigError(
                f"synth: --spurious-correlation must be in [0, 1], got {self.spurious_correlation}"
            )
        if not 0.0 <= self.misleading_share <= 1.0:
            raise ConfigError(f"synth: --misleading-share must be in [0, 1], got {self.misleading_share}")
        if self.size < 32 or self.size % 2:
            raise ConfigError(f"synth: size must be an even number >= 32, got {self.size}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ConfigError("synth: need 0 < min_seconds <= max_seconds")
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("synth: val_fraction and test_fraction must be >= 0 and sum to less than 1")
        unknown = [c for c in self.classes if c not in ACTION_CLASSES]
        if unknown or len(self.classes) < 2:
            raise ConfigError(
                f"synth: classes must be >= 2 of {list(ACTION_CLASSES)}; got {list(self.classes)}"
            )


@dataclass(frozen=True)
class ClipSpec:
    """Everything drawn per clip before rendering (the manifest row comes from it)."""

    index: int
    label: str
    split: str
    audio_kind: str
    source: str  # class name (relevant / misleading), distractor name, or "silence"
    background_sound: str | None  # a quiet distractor under relevant audio
    seconds: float
    ambiguity: float

    @property
    def path(self) -> str:
        return f"clips/{self.index:06d}.mp4"

    @property
    def tags(self) -> list[str]:
        if self.audio_kind == "silent":
            return [SILENCE_TAG]
        if self.audio_kind == "irrelevant":
            return [IRRELEVANT_TAGS[self.source]]
        tags = [CLASS_TAGS[self.source]]
        if self.background_sound:
            tags.append(IRRELEVANT_TAGS[self.background_sound])
        return tags

    def row(self) -> dict[str, str]:
        return {
            "path": self.path,
            "label": self.label,
            "split": self.split,
            "audio_kind": self.audio_kind,
            "audio_tags": ";".join(self.tags),
        }


def sample_clip_spec(cfg: SynthConfig, index: int) -> ClipSpec:
    """Draws clip ``index`` of the data set ``cfg`` (depends only on ``cfg.seed, index``)."""
    rng = np.random.default_rng([cfg.seed, index, 0])
    classes = list(cfg.classes)
    # Balanced classes: consecutive indices cycle through a per-seed class order.
    order = np.random.default_rng([cfg.seed, 1 << 20]).permutation(len(classes))
    label = classes[order[index % len(classes)]]
    u = rng.random()
    split = "val" if u < cfg.val_fraction else "test" if u < cfg.val_fraction + cfg.test_fraction else "train"
    bg = None
    if rng.random() < cfg.relevance:
        kind, source = "relevant", label
        if rng.random() < 0.25:
            bg = str(rng.choice(list(IRRELEVANT_TAGS)))
    else:
        weights = kind_weights(cfg.misleading_share)
        kind = str(rng.choice(list(weights), p=list(weights.values())))
        if kind == "irrelevant":
            source = str(rng.choice(list(IRRELEVANT_TAGS)))
            # Own generator: S changes this clip's sound and nothing else.
            if (
                split == "train"
                and cfg.spurious_correlation > 0
                and np.random.default_rng([cfg.seed, index, 3]).random() < cfg.spurious_correlation
            ):
                source = SPURIOUS_SOUNDS[label]
        elif kind == "misleading":
            source = str(rng.choice([c for c in ACTION_CLASSES if c != label]))
        else:
            source = "silence"
    seconds = round(float(rng.uniform(cfg.min_seconds, cfg.max_seconds)) * cfg.fps) / cfg.fps
    amb = float(np.clip(cfg.ambiguity * rng.uniform(0.5, 1.5), 0.0, 1.0))
    return ClipSpec(index, label, split, kind, source, bg, seconds, amb)


def render_clip(cfg: SynthConfig, spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Renders one clip.

    Returns:
        frames: uint8 ``(T, size, size, 3)``.
        audio: float32 ``(N,)`` mono at ``cfg.sample_rate``, ``N = T / fps * sr``.
    """
    video, events = render_video(cfg, spec)
    return video, render_audio(cfg, spec, events)


def render_video(cfg: SynthConfig, spec: ClipSpec) -> tuple[np.ndarray, Events]:
    """The clip's frames, uint8 ``(T, size, size, 3)``, and the sound events of its action.

    Its own generator ``(seed, index, 1)``: the frames do not depend on the soundtrack, so a
    study can pair one video with every kind of audio (``render_audio``).
    """
    rng = np.random.default_rng([cfg.seed, spec.index, 1])
    n_frames = int(round(spec.seconds * cfg.fps))
    s = float(cfg.size)
    t = np.arange(n_frames, dtype=np.float32) / cfg.fps
    a = spec.ambiguity
    frames, shift = background(rng, n_frames, cfg.size, jitter=max(2, cfg.size // 40))
    cv = Canvas(frames, shift, contrast=1.0 - 0.75 * a)
    events = RENDERERS[spec.label](cv, rng, t, s)
    occluders(cv, rng, t, s, count=int(rng.poisson(0.4 + 2.0 * a)), scale=a)
    out = cv.frames
    blur = 1 + int(round(4 * a * rng.uniform(0.5, 1.0)))
    if blur > 1:  # motion blur: mean over the last `blur` frames
        acc = out.copy()
        for j in range(1, blur):
            acc[j:] += out[:-j]
            acc[:j] += out[:1]
        out = acc / blur
    if a > 0:
        out += rng.standard_normal(out.shape[:3] + (1,), dtype=np.float32) * (18 * a)
    return np.clip(out, 0, 255).astype(np.uint8), events


def render_audio(cfg: SynthConfig, spec: ClipSpec, events: Events) -> np.ndarray:
    """The clip's soundtrack, float32 ``(N,)``; ``events``: its video's (``render_video``).

    Own generator ``(seed, index, 2)``; relevant audio follows the video's events.
    """
    sr = cfg.sample_rate
    n = int(round(spec.seconds * sr))
    arng = np.random.default_rng([cfg.seed, spec.index, 2])
    if spec.audio_kind == "relevant":
        wave = A.class_sound(spec.label, events.times, events.envelope, n, sr, cfg.fps, arng)
        if spec.background_sound:
            wave = wave + arng.uniform(0.15, 0.3) * A.DISTRACTORS[spec.background_sound](n, sr, arng)
    elif spec.audio_kind == "misleading":
        times, env = A.fake_events(spec.source, n, sr, cfg.fps, arng)
        wave = A.class_sound(spec.source, times, env, n, sr, cfg.fps, arng)
    elif spec.audio_kind == "irrelevant":
        wave = A.DISTRACTORS[spec.source](n, sr, arng)
    else:
        wave = np.zeros(n, np.float32)
    wave = wave / (np.abs(wave).max() + 1e-8) * arng.uniform(0.3, 0.9)
    wave = wave + arng.normal(0, 10 ** (-60 / 20), n)  # a -60 dBFS noise floor, like any recording
    return np.clip(wave, -1, 1).astype(np.float32)


def encode_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int) -> None:
    """Writes H.264 (yuv420p, single-threaded for bit-exactness) + AAC mono with PyAV."""
    import av  # media library: imported where it is needed

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as box:
        vs = box.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "20", "threads": "1"})
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.thread_count = 1
        aus = box.add_stream("aac", rate=sample_rate, layout="mono")
        aus.bit_rate = 48000
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                box.mux(pkt)
        for pkt in vs.encode():
            box.mux(pkt)
        hop = 1024  # the AAC frame size
        for i in range(0, len(audio), hop):
            chunk = audio[None, i : i + hop]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, i
            for pkt in aus.encode(frame):
                box.mux(pkt)
        for pkt in aus.encode():
            box.mux(pkt)
    os.replace(tmp, path)


def _work(job: tuple[dict, int, str]) -> dict[str, str]:
    cfg_dict, index, out_dir = job
    cfg = SynthConfig.from_dict(cfg_dict)
    spec = sample_clip_spec(cfg, index)
    frames, audio = render_clip(cfg, spec)
    encode_mp4(Path(out_dir) / spec.path, frames, audio, cfg.fps, cfg.sample_rate)
    return spec.row()


def generate(
    out_dir: str | Path,
    cfg: SynthConfig,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Renders ``cfg.clips`` clips under ``out_dir/clips`` and writes ``out_dir/manifest.csv``.

    Args:
        out_dir: output folder (created; existing clips with the same names are overwritten).
        cfg: the data set.
        workers: processes (default: the CPUs this process may use); 1 renders in-process.
        progress: called with ``(done, total)`` after each clip.

    Returns:
        The manifest path.
    """
    out = Path(out_dir)
    try:
        (out / "clips").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {out}: {exc}; choose a writable output folder") from None
    workers = workers or len(os.sched_getaffinity(0))
    jobs = [(cfg.to_dict(), i, str(out)) for i in range(cfg.clips)]
    rows: list[dict[str, str]] = []
    start = time.perf_counter()
    if workers <= 1:
        results = map(_work, jobs)
        pool = None
    else:
        # spawn: the parent may hold torch/OpenMP threads, which fork does not copy safely.
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap(_work, jobs, chunksize=4)
    try:
        for k, row in enumerate(results, 1):
            rows.append(row)
            if progress:
                progress(k, cfg.clips)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    config = {k: v for k, v in cfg.to_dict().items() if _NEW_KNOB_DEFAULTS.get(k, object()) != v}
    meta = {
        "generator": "imd synth",
        "config": config,
        "classes": list(cfg.classes),
        "class_tags": {c: CLASS_TAGS[c] for c in cfg.classes},
    }
    (out / "synth_config.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("rendered %d clips in %.1f s with %d worker(s)", cfg.clips, time.perf_counter() - start, workers)
    return manifest
