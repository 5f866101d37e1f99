"""SynthAV clips rendered in memory for training: no MP4 round trip, fresh every round.

More fresh clips was the lever that moved the demo model (docs/RESULTS.md), and encoding
plus decoding an MP4 costs about as much as rendering it. Rendering at 96 px and
resizing to the training decode size (INTER_AREA, as the decode path does) stays within
about one point of the MP4 domain on the held-out seed (0.767 vs 0.777 top-1 for the
same model; rendering straight at 64 px loses 9 points), so training can stream fresh
rendered clips and still be checked on real decoded MP4 files.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from imd_core.data.transforms import ClipPreprocessor, resize_short_side, uniform_times
from imd_core.synth import ACTION_CLASSES, SynthConfig
from imd_core.synth.generate import render_clip, sample_clip_spec

HELD_OUT_SEED = 777  # the demo's held-out seed: never rendered for training


def _render(
    job: tuple[dict, int, int, int | None, ClipPreprocessor],
) -> tuple[np.ndarray, torch.Tensor, int, str]:
    """One clip: ``k`` frames (the decode path's TSN segment picks), resized, and its fbank."""
    torch.set_num_threads(1)
    cfg_dict, index, k, size, pre = job
    cfg = SynthConfig.from_dict(cfg_dict)
    spec = sample_clip_spec(cfg, index)
    frames, audio = render_clip(cfg, spec)
    picked = pick_frames(frames, cfg.fps, k, size)
    return picked, pre.fbank(audio), ACTION_CLASSES.index(spec.label), spec.audio_kind


def pick_frames(frames: np.ndarray, fps: float, k: int, size: int | None) -> np.ndarray:
    """The ``k`` frames the decode path would pick from a whole clip, resized to ``size``."""
    frame_times = np.arange(len(frames)) / fps
    idx = np.clip(np.searchsorted(frame_times, uniform_times(0.0, len(frames) / fps, k)), 0, len(frames) - 1)
    picked = frames[idx]
    return picked if size is None else np.ascontiguousarray(resize_short_side(picked, size))


def render_set(
    cfg: SynthConfig, pre: ClipPreprocessor, k: int, tagger, *, size: int | None = None, workers: int = 2
):
    """Renders ``cfg.clips`` clips in ``workers`` processes and tags them with the frozen tagger.

    Returns a ``build_demo.ClipSet`` with frames uint8 ``(N, k, S, S, 3)`` (``S = size``,
    or the render size).
    """
    import build_demo as B  # tag_clips / ClipSet; imported late (build_demo imports this module)

    if cfg.seed == HELD_OUT_SEED:
        raise SystemExit(f"seed {HELD_OUT_SEED} is the held-out test seed: render training data with another")
    jobs = [(cfg.to_dict(), i, k, size, pre) for i in range(cfg.clips)]
    with mp.get_context("spawn").Pool(workers) as pool:
        out = pool.map(_render, jobs, chunksize=8)
    rows = [{"label": ACTION_CLASSES[o[2]], "audio_kind": o[3]} for o in out]
    return B.tag_clips(rows, np.stack([o[0] for o in out]), torch.stack([o[1] for o in out]), tagger)


def subset(data, idx: np.ndarray):
    """The clips ``idx`` of a ``ClipSet``."""
    return replace(
        data,
        frames=data.frames[idx],
        labels=data.labels[idx],
        kinds=[data.kinds[i] for i in idx],
        emb=data.emb[idx],
        logits=data.logits[idx],
    )


def concat(a, b):
    """Two ``ClipSet`` s with frames of the same shape, one after the other."""
    return replace(
        a,
        frames=np.concatenate([a.frames, b.frames]),
        labels=torch.cat([a.labels, b.labels]),
        kinds=a.kinds + b.kinds,
        emb=torch.cat([a.emb, b.emb]),
        logits=torch.cat([a.logits, b.logits]),
    )


def fresh_rounds(
    base: SynthConfig,
    pre: ClipPreprocessor,
    tagger,
    *,
    clips: int,
    seed_base: int,
    k: int,
    size: int,
    real=None,
    real_per_round: int = 0,
    workers: int = 2,
) -> Callable[[int], object]:
    """``round -> ClipSet``: ``clips`` newly rendered clips (seed ``seed_base + round``) plus
    ``real_per_round`` clips drawn from ``real`` (decoded MP4s), so every round also sees
    the domain the model is used on."""

    def make(round_index: int):
        cfg = replace(base, clips=clips, seed=seed_base + round_index)
        data = render_set(cfg, pre, k, tagger, size=size, workers=workers)
        if real is not None and real_per_round > 0:
            rng = np.random.default_rng([seed_base, round_index])
            data = concat(data, subset(real, rng.choice(len(real.labels), real_per_round, replace=False)))
        return data

    return make
