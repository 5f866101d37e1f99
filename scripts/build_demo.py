"""Builds the embedded demo model end to end, reproducibly, on CPU.

Steps (each prints what it did; ``--work`` keeps intermediate results):

1. ``imd synth``: a training set (seed 0) and a held-out set with an unseen seed (777).
2. ``scripts/train_tagger.py``: a tiny ``ASTForAudioClassification`` tagging SynthAV
   audio with AudioSet names.
3. The SAVLD between the action names and the tagger's labels, built with the
   all-MiniLM-L6-v2 encoder (``Savld.build``, what ``imd savld build`` runs), K = 1.
4. The IMD model of the ``demo`` recipe (``imd_core/configs/demo.json``, the one source of
   its model fields and training values) trained on the training set (AST frozen, its
   outputs cached per clip, as the training engine does) with the real preprocessing
   (``imd_core.data.transforms.ClipPreprocessor``) and decoding (``imd_core.media``).
5. Evaluation on the unseen-seed set: top-1 and keep/drop accuracy (keep relevant audio,
   drop irrelevant, misleading and silent audio); then ``resources/demo_model/`` and a
   few ``resources/demo_clips/``.

The training loop here is a small one written against ``imd_core.model`` (the engine's
``imd train`` was not wired to data when this was written); ``scripts/ablation.py``
reuses it. It takes every recipe value from ``demo.json`` (flags override them for
experiments) and writes ``WORK/demo_data.csv``, the same clips as a manifest, so
``imd train --config demo --data WORK/demo_data.csv`` trains the same recipe with the
engine (docs/RESULTS.md, "The embedded demo model"). Example::

    .venv/bin/python scripts/build_demo.py --work runs/demo
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imd_core.data.transforms import ClipPreprocessor, uniform_times
from imd_core.model.audio_features import AudioFeatureConfig
from imd_core.model.config import ModelConfig
from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld
from imd_core.synth import ACTION_CLASSES, TAGGER_LABELS, SynthConfig, generate
from imd_core.train.config import TrainConfig, load_train_config

log = logging.getLogger("build_demo")
ROOT = Path(__file__).resolve().parent.parent
RECIPE = "demo"  # imd_core/configs/demo.json: the model and training values of the demo


def cache_frames(recipe: TrainConfig) -> int:
    """Frames kept per training clip: ``frame_grid`` candidates per segment (the engine's
    ``data.frame_cache`` sampling); each epoch picks one of each segment's."""
    return int(recipe.model["num_frames"]) * recipe.data.frame_grid


@dataclass
class ClipSet:
    """A decoded SynthAV split, cached in memory.

    frames: uint8 ``(N, K, S, S, 3)``; labels ``(N,)``; kinds: audio_kind per clip;
    emb ``(N, D_a)`` and logits ``(N, A)``: the frozen tagger's outputs on each clip.
    """

    frames: np.ndarray
    labels: torch.Tensor
    kinds: list[str]
    emb: torch.Tensor
    logits: torch.Tensor


def read_manifest(folder: Path, splits: tuple[str, ...] | None = None) -> list[dict[str, str]]:
    import csv

    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if splits is None or r["split"] in splits]


def _load_one(job: tuple[Path, ClipPreprocessor, int, int]) -> tuple[np.ndarray, torch.Tensor]:
    """One clip: ``frames_per_clip`` frames (TSN segment centres) at ``size`` and its fbank."""
    from imd_core.media.decode import decode_clip

    torch.set_num_threads(1)
    path, pre, frames_per_clip, size = job
    clip = decode_clip(path, size=size, sample_rate=pre.sample_rate)
    dur = clip.info.duration or len(clip.frames) / 25.0
    times = uniform_times(0.0, dur, frames_per_clip)
    idx = np.clip(np.searchsorted(clip.frame_times, times), 0, len(clip.frames) - 1)
    f = clip.frames[idx]
    top, left = (f.shape[1] - size) // 2, (f.shape[2] - size) // 2
    return np.ascontiguousarray(f[:, top : top + size, left : left + size]), pre.fbank(clip.audio)


def decode_clips(
    folder: Path,
    rows: list[dict[str, str]],
    pre: ClipPreprocessor,
    frames_per_clip: int,
    size: int,
    cache: Path | None = None,
    workers: int = 2,
) -> tuple[np.ndarray, torch.Tensor]:
    """Decodes clips in ``workers`` processes: frames uint8 ``(N, K, S, S, 3)``, fbanks ``(N, F, M)``.

    With ``cache``, the result is stored there (``.npz``) and reused on the next run.
    """
    import multiprocessing as mp

    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return z["frames"], torch.from_numpy(z["fbank"])
    jobs = [(folder / r["path"], pre, frames_per_clip, size) for r in rows]
    with mp.get_context("spawn").Pool(workers) as pool:
        loaded = pool.map(_load_one, jobs, chunksize=8)
    frames, fbank = np.stack([x[0] for x in loaded]), torch.stack([x[1] for x in loaded])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, frames=frames, fbank=fbank.numpy())
    return frames, fbank


def tag_clips(rows: list[dict[str, str]], frames: np.ndarray, fbank: torch.Tensor, tagger) -> ClipSet:
    """Runs the frozen tagger once per clip (the training engine caches the same outputs)."""
    with torch.no_grad():
        outs = [tagger(fbank[i : i + 64]) for i in range(0, len(fbank), 64)]
    labels = torch.tensor([ACTION_CLASSES.index(r["label"]) for r in rows])
    return ClipSet(
        frames,
        labels,
        [r["audio_kind"] for r in rows],
        torch.cat([o[0] for o in outs]),
        torch.cat([o[1] for o in outs]),
    )


def batch_tensors(pre: ClipPreprocessor, frames: np.ndarray, train: bool, rng: np.random.Generator):
    """``(B, K, S', S', 3)`` uint8 -> rgb, motion ``(B, T, 3, S, S)``: the real preprocessing."""
    t = pre.num_frames
    rgbs, mots = [], []
    for f in frames:
        if train and len(f) > t:  # TSN-style: a random frame of each of t segments
            seg = len(f) / t
            idx = np.minimum((np.arange(t) * seg + rng.random(t) * seg).astype(int), len(f) - 1)
            f = f[idx]
        elif len(f) > t:
            f = f[np.linspace(0, len(f) - 1, t).round().astype(int)]
        out = pre(np.ascontiguousarray(f), None, train, rng)
        rgbs.append(out["rgb"])
        mots.append(out["motion"])
    return torch.stack(rgbs), torch.stack(mots)


@dataclass(frozen=True)
class Variant:
    """A training recipe of the ablation: how audio is used."""

    name: str
    imd: bool = True
    audio: bool = True  # False: video only (audio always absent)
    modality_dropout: float = 0.0  # DropPathway: drop the audio of a training clip with this p
    cross_modal_p: float = 0.0  # intra-class cross-modality augmentation (audio swap)


VARIANTS = {
    "video_only": Variant("video_only", imd=False, audio=False),
    "naive_fusion": Variant("naive_fusion", imd=False),
    "modality_dropout": Variant("modality_dropout", imd=False, modality_dropout=0.5),
    "imd": Variant("imd"),
    "imd_xmod": Variant("imd_xmod", cross_modal_p=0.5),
}


def make_model(
    tagger_dir: Path, savld: Savld, variant: Variant, image_size: int, warmup_steps: int, **overrides
) -> IMDModel:
    cfg = ModelConfig(
        **overrides,
        size="tiny",
        labels=ACTION_CLASSES,
        image_size=image_size,
        ast_source=str(tagger_dir),
        tag_top_k=1,
        imd=variant.imd,
        gating="teacher_then_straight_through",
        gating_warmup_steps=warmup_steps,
    )
    return IMDModel(cfg, savld=savld)


def recipe_model_config(recipe: TrainConfig, tagger_dir: Path | None, **overrides) -> ModelConfig:
    """The recipe's model for the SynthAV classes, its frozen AST loaded from ``tagger_dir``
    (None: the recipe's own ``ast_source``); ``overrides`` that are not None replace fields."""
    fields = {**recipe.model, "labels": list(ACTION_CLASSES)}
    if tagger_dir is not None:
        fields["ast_source"] = str(tagger_dir)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig.from_dict(fields)


def recipe_warmup_steps(recipe: TrainConfig, steps_per_epoch: int) -> int:
    """The recipe's lr warm-up in optimiser steps (as ``imd train`` counts it)."""
    s = recipe.schedule
    return s.warmup_steps if s.warmup_steps >= 0 else int(round(s.warmup_epochs * steps_per_epoch))


def train_model(
    model: IMDModel,
    pre: ClipPreprocessor,
    data: ClipSet | Callable[[int], ClipSet],
    variant: Variant,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    clips_per_epoch: int | None = None,
    on_epoch: Callable[[int], dict] | None = None,
    weight_decay: float = 0.05,
    grad_clip: float = 1.0,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> list[dict]:
    """AdamW + warm-up/cosine over all epochs; cached AST outputs; returns per-epoch losses.

    ``data`` is one ``ClipSet`` seen every epoch, or ``epoch -> ClipSet`` giving fresh clips
    each epoch (``clips_per_epoch`` of them, for the schedule). ``on_epoch(epoch)`` may
    return metrics (e.g. validation) to log with the epoch. The lr is ``lr`` times a linear
    ramp over ``warmup_steps`` (default: a tenth of the steps) times a cosine from step 0
    down to ``min_lr_ratio`` at the last step; every parameter is decayed; gradients are
    clipped to norm ``grad_clip`` (0: not clipped).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    get_data = data if callable(data) else (lambda _epoch: data)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n_sched = clips_per_epoch or len(data.labels)
    steps = epochs * math.ceil(n_sched / batch_size)
    warm = max(1, steps // 10 if warmup_steps is None else warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm)
            * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
        ),
    )
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        epoch_data = get_data(epoch)
        prepared = time.perf_counter() - start
        n = len(epoch_data.labels)
        by_class = [np.flatnonzero(epoch_data.labels.numpy() == c) for c in range(len(ACTION_CLASSES))]
        model.train()
        perm = rng.permutation(n)
        sums: dict[str, float] = {}
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            rgb, mot = batch_tensors(pre, epoch_data.frames[idx], True, rng)
            aidx = idx.copy()
            if variant.cross_modal_p > 0:  # swap audio with a same-class training clip
                for j, k in enumerate(idx):
                    if rng.random() < variant.cross_modal_p:
                        aidx[j] = rng.choice(by_class[int(epoch_data.labels[k])])
            present = torch.full((len(idx),), variant.audio)
            if variant.modality_dropout > 0:
                present &= torch.from_numpy(rng.random(len(idx)) >= variant.modality_dropout)
            out = model(
                rgb,
                mot,
                audio_embedding=epoch_data.emb[aidx],
                audio_logits=epoch_data.logits[aidx],
                audio_present=present,
                labels=epoch_data.labels[idx],
            )
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            sched.step()
            for k, v in {"loss": out.loss, **out.losses}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
        rec = {k: v / n for k, v in sums.items()} | {
            "epoch": epoch + 1,
            "clips": n,
            "data_seconds": prepared,
            "seconds": time.perf_counter() - start,
        }
        if on_epoch is not None:
            rec |= on_epoch(epoch)
        log.info("%s epoch %d: %s", variant.name, epoch + 1, {k: round(v, 4) for k, v in rec.items()})
        history.append(rec)
    return history


@torch.no_grad()
def evaluate(model: IMDModel, pre: ClipPreprocessor, data: ClipSet, variant: Variant) -> dict[str, float]:
    """Top-1, relevance (keep/drop) accuracy and the audio-drop rate per audio kind."""
    model.eval()
    rng = np.random.default_rng(0)
    preds, kept = [], []
    for i in range(0, len(data.labels), 32):
        rgb, mot = batch_tensors(pre, data.frames[i : i + 32], False, rng)
        present = torch.full((len(rgb),), variant.audio)
        out = model(
            rgb,
            mot,
            audio_embedding=data.emb[i : i + 32],
            audio_logits=data.logits[i : i + 32],
            audio_present=present,
        )
        preds.append(out.logits.argmax(-1))
        kept.append(out.audio_kept)
    pred, kept_t = torch.cat(preds), torch.cat(kept)
    kinds = np.array(data.kinds)
    relevant = torch.from_numpy(kinds == "relevant")
    res = {
        "top1": float((pred == data.labels).float().mean()),
        "keep_drop_acc": float((kept_t == relevant).float().mean()),
        "drop_rate": float((~kept_t).float().mean()),
        "clips": len(pred),
    }
    for k in ("relevant", "irrelevant", "misleading", "silent"):
        m = torch.from_numpy(kinds == k)
        if m.any():
            res[f"drop_rate_{k}"] = float((~kept_t[m]).float().mean())
            res[f"top1_{k}"] = float((pred[m] == data.labels[m]).float().mean())
    return res


def tune_threshold(
    model: IMDModel,
    pre: ClipPreprocessor,
    val: ClipSet,
    variant: Variant,
    grid: tuple[float, ...] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7),
) -> dict:
    """Sets ``relevance_threshold`` to the grid value with the best validation keep/drop accuracy.

    Ties go to the better top-1, then to the value nearest 0.5. ``val`` must not be the
    held-out set (the caller passes the training seed's unused ``test`` split).
    """
    table = {}
    for t in grid:
        model.config = model.config.replace(relevance_threshold=t)
        table[t] = evaluate(model, pre, val, variant)
    best = max(
        grid, key=lambda t: (round(table[t]["keep_drop_acc"], 6), round(table[t]["top1"], 6), -abs(t - 0.5))
    )
    model.config = model.config.replace(relevance_threshold=best)
    return {
        "threshold": best,
        "clips": len(val.labels),
        "table": {str(t): {k: round(table[t][k], 4) for k in ("top1", "keep_drop_acc")} for t in grid},
    }


def upgrade(model: IMDModel, savld: Savld, warmup_steps: int, **changes) -> IMDModel:
    """The same model with new ``ModelConfig`` fields (e.g. a visual head), keeping every weight
    that still fits. A relevance net whose inputs change starts fresh, with teacher forcing
    again for ``warmup_steps`` steps."""
    new_inputs = (
        changes.get("relevance_agreement", model.config.relevance_agreement)
        != model.config.relevance_agreement
    )
    cfg = model.config.replace(**changes)
    if new_inputs:
        cfg = cfg.replace(gating_warmup_steps=warmup_steps)
    new = IMDModel(cfg, savld=savld, load_pretrained=False)
    own = new.state_dict()
    kept = {
        k: v
        for k, v in model.state_dict().items()
        if k in own and own[k].shape == v.shape and not (new_inputs and k.startswith("relevance."))
    }
    if new_inputs:
        kept.pop("gating_steps", None)
    new.load_state_dict(kept, strict=False)
    log.info("upgraded the model with %s: %d of %d tensors kept", changes, len(kept), len(own))
    return new


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def build_savld(tagger_labels: list[str], k: int = 1) -> Savld:
    """SAVLD with all-MiniLM-L6-v2, K = 1 (each action's one nearest tagger label; the demo
    recipe's ``init.savld_k``)."""
    return Savld.build(list(ACTION_CLASSES), tagger_labels, k=k)


def main(argv: list[str] | None = None) -> int:
    recipe = load_train_config(RECIPE)
    if recipe.optim.name != "adamw" or recipe.schedule.name != "cosine":
        raise SystemExit(f"{RECIPE}.json: this script trains with adamw and a cosine schedule only")
    model_fields = recipe.model
    p = argparse.ArgumentParser(
        description="Build the embedded demo model from scratch (CPU). Model fields and training values come "
        f"from the {RECIPE} recipe (imd_core/configs/{RECIPE}.json); the flags below override them."
    )
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "demo", help="intermediate files")
    p.add_argument("--out", type=Path, default=ROOT / "resources", help="resources folder to write")
    p.add_argument("--train-clips", type=int, default=1000)
    p.add_argument("--test-clips", type=int, default=300)
    p.add_argument(
        "--train-data",
        type=Path,
        default=None,
        help="an existing SynthAV folder to train on (default: WORK/synth_train, seed 0)",
    )
    p.add_argument(
        "--extra-train-data",
        type=Path,
        nargs="*",
        default=[],
        help="more SynthAV folders (other seeds than 777) to train on, all their splits",
    )
    p.add_argument(
        "--tagger",
        type=Path,
        default=None,
        help="an existing tagger folder from train_tagger.py (default: train one into WORK/tagger)",
    )
    p.add_argument("--relevance", type=float, default=0.5)
    p.add_argument("--ambiguity", type=float, default=0.3)
    p.add_argument("--image-size", type=int, default=model_fields["image_size"])
    p.add_argument("--epochs", type=int, default=recipe.epochs)
    p.add_argument("--tagger-epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=recipe.batch_size)
    p.add_argument("--lr", type=float, default=recipe.optim.lr)
    p.add_argument("--seed", type=int, default=recipe.seed)
    p.add_argument("--no-write", action="store_true", help="evaluate only; leave resources/ alone")
    p.add_argument("--decode-only", action="store_true", help="generate and decode the data, then stop")
    p.add_argument("--max-train-clips", type=int, default=0, help="use only the first N training clips (CPU)")
    p.add_argument("--init", type=Path, default=None, help="continue training this saved model folder")
    p.add_argument(
        "--tune-threshold",
        action="store_true",
        help="pick the relevance threshold on the training seed's unused 'test' split (never on seed 777)",
    )
    p.add_argument(
        "--fresh-rounds",
        type=int,
        default=0,
        help="train on clips rendered in memory instead: this many rounds (epochs) of new clips",
    )
    p.add_argument("--fresh-clips", type=int, default=2000, help="clips rendered per fresh round")
    p.add_argument(
        "--fresh-real",
        type=int,
        default=1000,
        help="decoded MP4 training clips mixed into each fresh round (the domain the model is used on)",
    )
    p.add_argument("--fresh-seed-base", type=int, default=10000, help="fresh round r renders seed BASE + r")
    p.add_argument("--render-size", type=int, default=96, help="render size of fresh clips (pixels)")
    p.add_argument(
        "--visual-head-weight",
        type=float,
        default=None,
        help="add/set the visual-only head with this auxiliary CE weight (ModelConfig.visual_head_weight; "
        "default: the recipe's for a new model, the --init model's own)",
    )
    p.add_argument(
        "--agreement",
        action="store_true",
        help="give an --init model's relevance net the SAVLD agreement features "
        "(ModelConfig.relevance_agreement; a new model has the recipe's)",
    )
    p.add_argument(
        "--warmup-epochs",
        type=float,
        default=1.0,
        help="teacher-forcing epochs for a relevance net that starts fresh (--agreement on --init)",
    )
    p.add_argument(
        "--tag-top-k",
        type=int,
        default=None,
        help="AST tags per clip in the SAVLD IoU relevance targets (ModelConfig.tag_top_k; "
        "default: the recipe's for a new model, the --init model's own)",
    )
    p.add_argument(
        "--patch-stem",
        choices=["linear", "conv"],
        default=model_fields["patch_stem"],
        help="patch embedding of a new model's visual streams (ModelConfig.patch_stem)",
    )
    p.add_argument(
        "--tag-floor",
        default=None,
        help="audio label below which no tag counts in the relevance targets "
        "(ModelConfig.relevance_tag_floor, e.g. Silence; default: the recipe's for a new "
        "model, the --init model's own)",
    )
    p.add_argument(
        "--train-only",
        choices=["all", "relevance"],
        default="all",
        help="'relevance': freeze everything but the relevance network (e.g. after changing its targets)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine more threads spin and slow down)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import train_tagger

    torch.set_num_threads(args.threads)
    work = args.work
    t0 = time.perf_counter()
    train_dir = args.train_data or work / "synth_train"
    test_dir = work / "synth_test_seed777"
    tagger_dir = args.tagger or work / "tagger"
    if not (train_dir / "manifest.csv").is_file():
        generate(
            train_dir,
            SynthConfig(clips=args.train_clips, relevance=args.relevance, ambiguity=args.ambiguity, seed=0),
        )
    if not (test_dir / "manifest.csv").is_file():
        generate(
            test_dir,
            SynthConfig(clips=args.test_clips, relevance=args.relevance, ambiguity=args.ambiguity, seed=777),
        )
    log.info("data ready (%.0f s)", time.perf_counter() - t0)
    # The preprocessor only needs the model's input fields: decode before the tagger exists.
    pre = ClipPreprocessor.from_model_config(
        recipe_model_config(recipe, None, image_size=args.image_size),
        flip=recipe.augment.flip,
        train_scale=list(recipe.augment.train_scale),
    )
    k_frames = cache_frames(recipe)
    train_rows = read_manifest(train_dir, ("train", "val"))
    train_rows = train_rows[: args.max_train_clips or None]
    if args.decode_only:
        for folder, rows, k, size, name in (
            (train_dir, train_rows, k_frames, pre.decode_size(True), "train"),
            (test_dir, read_manifest(test_dir), pre.num_frames, pre.image_size, "test"),
        ):
            suffix = len(rows) if name == "train" else ""
            decode_clips(
                folder, rows, pre, k, size, cache=work / f"cache_{name}{suffix}_{pre.image_size}.npz"
            )
        log.info("decoded (%.0f s)", time.perf_counter() - t0)
        return 0
    test_rows = read_manifest(test_dir)
    train_frames, train_fb = decode_clips(
        train_dir,
        train_rows,
        pre,
        k_frames,
        pre.decode_size(True),
        cache=work / f"cache_train{len(train_rows)}_{pre.image_size}.npz",
    )
    for extra in args.extra_train_data:  # more clips from other seeds: every split is training data
        rows = read_manifest(extra)
        if json.loads((extra / "synth_config.json").read_text())["config"]["seed"] == 777:
            raise SystemExit(f"{extra} uses the held-out seed 777: generate it with another seed")
        f, fb = decode_clips(
            extra,
            rows,
            pre,
            k_frames,
            pre.decode_size(True),
            cache=work / f"cache_{extra.name}_{len(rows)}_{pre.image_size}.npz",
        )
        train_rows = train_rows + [r | {"split": "train", "file": str(extra / r["path"])} for r in rows]
        train_frames, train_fb = np.concatenate([train_frames, f]), torch.cat([train_fb, fb])
    write_engine_manifest(work / "demo_data.csv", train_dir, train_rows, read_manifest(train_dir, ("test",)))
    test_frames, test_fb = decode_clips(
        test_dir,
        test_rows,
        pre,
        pre.num_frames,
        pre.image_size,
        cache=work / f"cache_test_{pre.image_size}.npz",
    )
    log.info("decoded %d + %d clips (%.0f s)", len(train_rows), len(test_rows), time.perf_counter() - t0)
    if not (tagger_dir / "model.safetensors").is_file():
        # The tagger learns from exactly the AST input the IMD pipeline computes (the
        # clip's centred audio window); "val" clips pick its epoch; seed 777 tests it.
        is_val = torch.tensor([r["split"] == "val" for r in train_rows])
        y = train_tagger.targets(train_rows, TAGGER_LABELS)
        held = {
            "val": (train_fb[is_val], y[is_val]),
            "heldout_seed777": (test_fb, train_tagger.targets(test_rows, TAGGER_LABELS)),
        }
        lengths = torch.full((int((~is_val).sum()),), train_fb.shape[1])
        tagger, tmetrics = train_tagger.fit(
            (train_fb[~is_val], y[~is_val], lengths),
            held,
            window=train_fb.shape[1],
            epochs=args.tagger_epochs,
            batch_size=8,
            lr=1e-3,
            seed=args.seed,
        )
        fcfg = AudioFeatureConfig(max_length=train_fb.shape[1])
        train_tagger.save(tagger, tagger_dir, fcfg, tmetrics)
    tagger_metrics = json.loads((tagger_dir / "tagger_metrics.json").read_text())
    log.info("tagger ready (%.0f s): %s", time.perf_counter() - t0, tagger_metrics)

    savld = build_savld(list(TAGGER_LABELS), k=recipe.init.savld_k)
    variant = VARIANTS["imd"]
    clips_per_epoch = (
        args.fresh_clips + min(args.fresh_real, len(train_rows)) if args.fresh_rounds else len(train_rows)
    )
    steps_per_epoch = math.ceil(clips_per_epoch / args.batch_size)
    if args.init is not None:  # continue training a saved model (same architecture, its own tagger)
        from imd_core.model.checkpoint import load_model

        model = load_model(args.init)
        model.set_savld(savld)
        changes = {}
        if args.visual_head_weight is not None:
            changes["visual_head_weight"] = args.visual_head_weight
        if args.agreement:
            changes["relevance_agreement"] = True
        if changes:
            model = upgrade(model, savld, round(args.warmup_epochs * steps_per_epoch), **changes)
        if args.tag_top_k is not None:
            model.config = model.config.replace(tag_top_k=args.tag_top_k)
        if args.tag_floor is not None:
            model.config = model.config.replace(relevance_tag_floor=args.tag_floor)
            model.tag_floor_index = model._find_tag_floor()
        ast_source = None  # the AST lives in the folder's weights
    else:  # the recipe's model (demo.json), its frozen AST from tagger_dir
        model = IMDModel(
            recipe_model_config(
                recipe,
                tagger_dir,
                image_size=args.image_size,
                patch_stem=args.patch_stem,
                visual_head_weight=args.visual_head_weight,
                tag_top_k=args.tag_top_k,
                relevance_tag_floor=args.tag_floor,
            ),
            savld=savld,
        )
        ast_source = model_fields["ast_source"]  # "demo_tagger": written beside the model (OUT/demo_tagger)
    if args.train_only == "relevance":
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("relevance."))
    train_set = tag_clips(train_rows, train_frames, train_fb, model.ast)
    test_set = tag_clips(test_rows, test_frames, test_fb, model.ast)
    # seed 0's own test split: never trained on; watches training and tunes the threshold
    val_rows = read_manifest(train_dir, ("test",))
    val_frames, val_fb = decode_clips(
        train_dir,
        val_rows,
        pre,
        pre.num_frames,
        pre.image_size,
        cache=work / f"cache_valtest{len(val_rows)}_{pre.image_size}.npz",
    )
    val_set = tag_clips(val_rows, val_frames, val_fb, model.ast)

    model.config = model.config.replace(ast_source=ast_source)
    schedule = {
        "weight_decay": recipe.optim.weight_decay,
        "grad_clip": recipe.optim.grad_clip,
        "warmup_steps": recipe_warmup_steps(recipe, steps_per_epoch),
        "min_lr_ratio": recipe.schedule.min_lr_ratio,
    }

    def watch(_epoch: int) -> dict:
        from imd_core.model.checkpoint import save_model

        save_model(model, work / "last_epoch_model", savld=savld)  # an interrupted build keeps its progress
        m = evaluate(model, pre, val_set, variant)
        return {"val_top1": m["top1"], "val_keep_drop_acc": m["keep_drop_acc"]}

    history = []
    if args.fresh_rounds > 0:
        import synth_stream

        real = min(args.fresh_real, len(train_set.labels))
        rounds = synth_stream.fresh_rounds(
            SynthConfig(relevance=args.relevance, ambiguity=args.ambiguity, size=args.render_size),
            pre,
            model.ast,
            clips=args.fresh_clips,
            seed_base=args.fresh_seed_base,
            k=k_frames,
            size=pre.decode_size(True),
            real=train_set,
            real_per_round=real,
        )
        history = train_model(
            model,
            pre,
            rounds,
            variant,
            epochs=args.fresh_rounds,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            clips_per_epoch=args.fresh_clips + real,
            on_epoch=watch,
            **schedule,
        )
    elif args.epochs > 0:
        history = train_model(
            model,
            pre,
            train_set,
            variant,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            on_epoch=watch,
            **schedule,
        )
    tuning = None
    if args.tune_threshold:
        tuning = tune_threshold(model, pre, val_set, variant)
        log.info("relevance threshold from %d validation clips: %s", len(val_rows), tuning)
    metrics = evaluate(model, pre, test_set, variant)
    log.info("held-out (seed 777): %s (%.0f s)", metrics, time.perf_counter() - t0)
    report = {
        "heldout_seed777": metrics,
        "tagger": tagger_metrics,
        "history": history,
        "threshold_tuning": tuning,
        "args": {k: str(v) for k, v in vars(args).items()},
        "savld": savld.mapping,
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.no_write:
        return 0
    from imd_core.model.checkpoint import save_model

    out_model = args.out / "demo_model"
    if out_model.exists():
        shutil.rmtree(out_model)
    save_model(model, out_model, savld=savld)
    if ast_source is not None:  # the tagger the model names ("demo_tagger"), beside it: OUT/demo_tagger
        out_tagger = args.out / ast_source
        if not out_tagger.exists() or out_tagger.resolve() != tagger_dir.resolve():
            shutil.rmtree(out_tagger, ignore_errors=True)
            shutil.copytree(tagger_dir, out_tagger)
    (out_model / "demo_metrics.json").write_text(
        json.dumps({"heldout_seed777": metrics, "tagger_test": tagger_metrics.get("test")}, indent=2) + "\n"
    )
    write_demo_clips(test_dir, args.out / "demo_clips")
    log.info(
        "wrote %s (%.1f MB) and demo clips (%.1f MB)",
        out_model,
        folder_mb(out_model),
        folder_mb(args.out / "demo_clips"),
    )
    return 0


def write_engine_manifest(
    path: Path, train_dir: Path, train_rows: list[dict[str, str]], val_rows: list[dict[str, str]]
) -> Path:
    """The clips this build trains on (split ``train``) and watches (seed 0's ``test`` split,
    as ``val``) as an ``imd train`` manifest with absolute paths, so ``imd train --config
    demo --data PATH`` trains the same recipe on the same data."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["path", "label", "split"])
        for rows, split in ((train_rows, "train"), (val_rows, "val")):
            for r in rows:
                out.writerow([str(Path(r.get("file") or train_dir / r["path"]).resolve()), r["label"], split])
    return path


def write_demo_clips(test_dir: Path, out: Path, per_kind: dict[str, int] | None = None) -> None:
    """Copies a few held-out clips, named ``<action>_<audio kind>[_<tag>].mp4``."""
    per_kind = per_kind or {"relevant": 4, "irrelevant": 2, "misleading": 1, "silent": 1}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    seen_labels: set[str] = set()
    counts = dict.fromkeys(per_kind, 0)
    for row in read_manifest(test_dir):
        kind = row["audio_kind"]
        if counts[kind] >= per_kind[kind] or row["label"] in seen_labels:
            continue
        counts[kind] += 1
        seen_labels.add(row["label"])
        tag = "" if kind == "relevant" else "_" + row["audio_tags"].split(";")[0].split(",")[0].lower()
        shutil.copy(test_dir / row["path"], out / f"{row['label'].replace(' ', '_')}_{kind}{tag}.mp4")


if __name__ == "__main__":
    sys.exit(main())
