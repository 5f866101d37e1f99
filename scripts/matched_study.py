"""The matched IMD study on SynthAV (issue 18 item 3): one set of videos, every soundtrack.

Every clip's video is rendered once (``synth.generate.render_video``) at each ambiguity Q and
paired with the soundtrack that each grid cell's generator draws for it
(``sample_clip_spec`` with that cell's relevance P, misleading share M and, in training,
spurious correlation S; ``render_audio``): exactly the clip ``imd synth`` writes for that
kind, so variants and cells differ only in the audio, clip for clip. The shipped demo
model's video streams and tagger are frozen and run once per clip; each run trains a fresh
relevance net, fusion and heads (the shipped recipe's architecture) on those features.

    .venv/bin/python scripts/matched_study.py --out runs/matched            # pools, then the grid
    .venv/bin/python scripts/matched_study.py --out runs/matched --report docs/results_matched.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_demo as B  # noqa: E402
from synth_stream import HELD_OUT_SEED, pick_frames  # noqa: E402

from imd_core.data.transforms import ClipPreprocessor  # noqa: E402
from imd_core.model.checkpoint import load_model  # noqa: E402
from imd_core.model.imd_model import IMDModel  # noqa: E402
from imd_core.model.savld import Savld  # noqa: E402
from imd_core.synth import ACTION_CLASSES, SynthConfig, sample_clip_spec  # noqa: E402
from imd_core.synth.classes import SPURIOUS_SOUNDS  # noqa: E402
from imd_core.synth.generate import render_audio, render_video  # noqa: E402
from imd_core.train.config import load_train_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo_model"
RENDER_SIZE = 96  # the demo's training render size (synth_stream: 64 px renders lose 9 points)
TRAIN_SEED_BASE, TEST_SEED_BASE = 30000, 31000  # no demo, tagger or ablation set uses these
KINDS = ("relevant", "irrelevant", "misleading", "silent")
log = logging.getLogger("matched_study")
hf_logging.disable_progress_bar()  # one tagger load per run: no bar each time


@dataclass(frozen=True)
class Variant:
    """How a run uses the audio; everything else is the shipped recipe (``demo.json``)."""

    name: str
    imd: bool = False
    agreement: bool = False  # ModelConfig.relevance_agreement (the shipped recipe: True)
    audio: bool = True  # False: video only
    modality_dropout: float = 0.0  # drop a training clip's audio with this p (DropPathway)
    cross_modal_p: float = 0.0  # swap a training clip's audio with a same-class clip's
    oracle: bool = False  # keep the audio iff the clip's true kind is relevant (train and test)
    savld_k: int = 1  # the dictionary: K = 1 is the demo's, K = 3 an imprecise one


VARIANTS = {
    v.name: v
    for v in (
        Variant("video_only", audio=False),
        Variant("naive_fusion"),
        Variant("modality_dropout", modality_dropout=0.5),
        Variant("imd", imd=True),
        Variant("imd_agree", imd=True, agreement=True),
        Variant("imd_xmod", imd=True, cross_modal_p=0.5),
        Variant("imd_agree_k3", imd=True, agreement=True, savld_k=3),
        Variant("oracle", oracle=True),
    )
}


# ------------------------------------------------------------------ pools: render and encode once
_WORKER: dict = {}


def _init_worker() -> None:
    torch.set_num_threads(1)
    model = load_model(DEMO)
    _WORKER.update(model=model, pre=ClipPreprocessor.from_model_config(model.config))


def _encode_chunk(job: tuple[int, list[int], list[float], list[tuple[float, float, float]]]) -> dict:
    """Renders clips ``indices`` of pool ``seed`` at every Q with every cell's soundtrack, encoded."""
    seed, indices, qs, cells = job
    model, pre = _WORKER["model"], _WORKER["pre"]
    base = SynthConfig(relevance=1.0, seed=seed, size=RENDER_SIZE, val_fraction=0.0, test_fraction=0.0)
    rng = np.random.default_rng(0)  # eval preprocessing draws nothing; the API wants one
    rgb: dict[float, list] = {q: [] for q in qs}
    mot: dict[float, list] = {q: [] for q in qs}
    fbanks, labels, cell_rows = [], [], []
    for i in indices:
        events = None
        for q in qs:
            spec = sample_clip_spec(replace(base, ambiguity=q), i)
            frames, events = render_video(replace(base, ambiguity=q), spec)
            out = pre(pick_frames(frames, base.fps, pre.num_frames, pre.decode_size(False)), None, False, rng)
            rgb[q].append(out["rgb"])
            mot[q].append(out["motion"])
        keys: dict[tuple, int] = {}
        rows = []
        for p, m, s in cells:
            drawn = sample_clip_spec(
                replace(base, relevance=p, misleading_share=m, spurious_correlation=s), i
            )
            assert drawn.label == spec.label
            key = (drawn.audio_kind, drawn.source, drawn.background_sound)
            if key not in keys:
                keys[key] = len(fbanks)
                sound = replace(spec, audio_kind=key[0], source=key[1], background_sound=key[2])
                fbanks.append(pre.fbank(render_audio(base, sound, events)))
            rows.append((keys[key], drawn.audio_kind, drawn.source))
        cell_rows.append(rows)
        labels.append(ACTION_CLASSES.index(spec.label))
    with torch.no_grad():
        video = np.stack(
            [torch.cat(model.video(torch.stack(rgb[q]), torch.stack(mot[q])), -1).numpy() for q in qs]
        )
        emb, logits = model.ast(torch.stack(fbanks))
    return {
        "video": video,
        "audio": torch.cat([emb, logits], -1).numpy(),
        "labels": labels,
        "cells": cell_rows,
    }


def build_pool(path: Path, seed: int, clips: int, qs: list[float], cells: list, workers: int) -> dict:
    """Pool ``seed``: video features ``(Q, N, D)``, audio features ``(K, D_a + A)`` and per cell
    each clip's audio row, kind and source. Saved to ``path`` (reused when present)."""
    meta = {"seed": seed, "clips": clips, "qs": qs, "cells": [list(c) for c in cells]}
    saved = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
    same = all(saved.get(k) == meta[k] for k in ("seed", "clips", "qs"))
    if same and all(c in saved["cells"] for c in meta["cells"]):  # a pool of these cells, or more: reuse it
        pos = [saved["cells"].index(c) for c in meta["cells"]]
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k][pos] if k in ("audio_row", "kind", "source") else z[k] for k in z.files}
        return arrays | {"meta": meta}
    assert seed != HELD_OUT_SEED
    start = time.perf_counter()
    chunks = [(seed, list(range(a, min(a + 16, clips))), qs, cells) for a in range(0, clips, 16)]
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        parts = pool.map(_encode_chunk, chunks)
    offsets = np.cumsum([0] + [len(p["audio"]) for p in parts])
    rows = [
        (off + r[0], r[1], r[2])
        for p, off in zip(parts, offsets[:-1], strict=True)
        for clip in p["cells"]
        for r in clip
    ]
    n_cells = len(cells)
    pool_arrays = {
        "video": np.concatenate([p["video"] for p in parts], axis=1).astype(np.float32),
        "audio": np.concatenate([p["audio"] for p in parts]).astype(np.float32),
        "labels": np.array([lab for p in parts for lab in p["labels"]], np.int64),
        "audio_row": np.array([r[0] for r in rows], np.int64).reshape(clips, n_cells).T,
        "kind": np.array([r[1] for r in rows]).reshape(clips, n_cells).T,
        "source": np.array([r[2] for r in rows]).reshape(clips, n_cells).T,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **pool_arrays)
    path.with_suffix(".json").write_text(json.dumps(meta | {"seconds": time.perf_counter() - start}))
    log.info("pool seed %d: %d clips in %.0f s", seed, clips, time.perf_counter() - start)
    return pool_arrays | {"meta": meta}


# ------------------------------------------------------------------ one run: a head on frozen features
class CachedVisual(torch.nn.Module):
    """Stands in for the frozen video encoder: its two inputs are the cached stream embeddings."""

    def __init__(self, embed_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.embed_dims = embed_dims

    def forward(self, e_rgb: torch.Tensor, e_mot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return e_rgb, e_mot


@dataclass(frozen=True)
class Features:
    """One cell's clips as the model sees them (cached)."""

    e_rgb: torch.Tensor
    e_mot: torch.Tensor
    emb: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    kinds: np.ndarray
    sources: np.ndarray

    @staticmethod
    def of(pool: dict, qi: int, cell: int, d_rgb: int, d_audio: int) -> Features:
        video = torch.from_numpy(pool["video"][qi])
        audio = torch.from_numpy(pool["audio"][pool["audio_row"][cell]])
        return Features(
            video[:, :d_rgb],
            video[:, d_rgb:],
            audio[:, :d_audio],
            audio[:, d_audio:],
            torch.from_numpy(pool["labels"]),
            pool["kind"][cell],
            pool["source"][cell],
        )


def make_model(variant: Variant, savlds: dict[int, Savld], warmup_steps: int) -> IMDModel:
    recipe = load_train_config(B.RECIPE)
    cfg = B.recipe_model_config(
        recipe,
        ROOT / "resources" / "demo_tagger",
        imd=variant.imd,
        relevance_agreement=variant.agreement,
        gating_warmup_steps=warmup_steps,
    )
    model = IMDModel(cfg, savld=savlds[variant.savld_k])
    model.video = CachedVisual(tuple(model.video.embed_dims))
    return model


def train_head(model: IMDModel, data: Features, variant: Variant, *, epochs: int, batch_size: int, seed: int):
    """AdamW + warm-up/cosine, as ``build_demo.train_model``, on cached features."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for n, p in model.named_parameters() if not n.startswith("ast.")]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    n = len(data.labels)
    steps = epochs * math.ceil(n / batch_size)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    by_class = [np.flatnonzero(data.labels.numpy() == c) for c in range(len(ACTION_CLASSES))]
    relevant = torch.from_numpy(data.kinds == "relevant")
    model.train()
    for _ in range(epochs):
        perm = rng.permutation(n)
        for a in range(0, n, batch_size):
            idx = perm[a : a + batch_size]
            aidx = idx.copy()
            if variant.cross_modal_p > 0:
                swap = rng.random(len(idx)) < variant.cross_modal_p
                for j in np.flatnonzero(swap):
                    aidx[j] = rng.choice(by_class[int(data.labels[idx[j]])])
            present = audio_present(variant, relevant[aidx])
            if variant.modality_dropout > 0:
                present &= torch.from_numpy(rng.random(len(idx)) >= variant.modality_dropout)
            out = model(
                data.e_rgb[idx],
                data.e_mot[idx],
                audio_embedding=data.emb[aidx],
                audio_logits=data.logits[aidx],
                audio_present=present,
                labels=data.labels[idx],
            )
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()


def audio_present(variant: Variant, relevant: torch.Tensor) -> torch.Tensor:
    if not variant.audio:
        return torch.zeros_like(relevant)
    return relevant.clone() if variant.oracle else torch.ones_like(relevant)


@torch.no_grad()
def evaluate(model: IMDModel, data: Features, variant: Variant) -> dict:
    """Top-1, keep/drop accuracy, per audio kind, the shortcut rate, and the clip-by-clip bits."""
    model.eval()
    relevant = torch.from_numpy(data.kinds == "relevant")
    out = model(
        data.e_rgb,
        data.e_mot,
        audio_embedding=data.emb,
        audio_logits=data.logits,
        audio_present=audio_present(variant, relevant),
    )
    pred, kept = out.logits.argmax(-1), out.audio_kept
    right = (pred == data.labels).numpy()
    res = {
        "top1": float(right.mean()),
        "keep_drop_acc": float((kept == relevant).float().mean()),
        "drop_rate": float((~kept).float().mean()),
        "correct": np.packbits(right).tobytes().hex(),
        "kept": np.packbits(kept.numpy()).tobytes().hex(),
    }
    for k in KINDS:
        m = data.kinds == k
        res[f"n_{k}"] = int(m.sum())
        if m.any():
            res[f"top1_{k}"] = float(right[m].mean())
            res[f"drop_{k}"] = float((~kept.numpy()[m]).mean())
    # irrelevant test clips predicted as a class whose spurious training sound they carry
    irr = np.flatnonzero(data.kinds == "irrelevant")
    carriers = [
        {ACTION_CLASSES.index(c) for c, s in SPURIOUS_SOUNDS.items() if s == data.sources[i]} for i in irr
    ]
    res["shortcut_rate"] = (
        float(np.mean([int(pred[i]) in c for i, c in zip(irr, carriers, strict=True)])) if len(irr) else None
    )
    return res


# ------------------------------------------------------------------ the grid
def run_one(job: dict) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(job["seed"])  # the head's initialisation: the same for every variant of a seed
    t0 = time.process_time()
    variant = VARIANTS[job["variant"]]
    train, test = job["train"], job["test"]
    steps = job["epochs"] * math.ceil(len(train.labels) / job["batch_size"])
    model = make_model(variant, job["savlds"], warmup_steps=steps // 4)
    train_head(model, train, variant, epochs=job["epochs"], batch_size=job["batch_size"], seed=job["seed"])
    res = evaluate(model, test, variant)
    keys = ("seed", "Q", "P", "M", "S", "variant")
    return {k: job[k] for k in keys} | res | {"cpu_s": round(time.process_time() - t0, 2)}


def grid_jobs(args, pools: dict, cells: list, savlds: dict, d_audio: int, done: set) -> list[dict]:
    jobs = []
    for seed, (qi, q) in itertools.product(args.seeds, enumerate(args.ambiguity)):
        tr, te = pools[("train", seed)], pools[("test", seed)]
        d_rgb = tr["video"].shape[-1] // 2
        for ci, (p, m, s) in enumerate(cells):
            for name in args.variants:
                if name == "video_only" and ci > 0:
                    continue  # the audio never reaches it: one run per (seed, Q) serves every cell
                key = (seed, q, p, m, s, name) if name != "video_only" else (seed, q, None, None, None, name)
                if key in done:
                    continue
                jobs.append(
                    dict(zip(("seed", "Q", "P", "M", "S", "variant"), key, strict=True))
                    | {
                        "train": Features.of(tr, qi, ci, d_rgb, d_audio),
                        "test": Features.of(te, qi, ci, d_rgb, d_audio),  # the cell at S = 0
                        "savlds": savlds,
                        "epochs": args.epochs,
                        "batch_size": args.batch_size,
                    }
                )
    return jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data seeds (new clips each)")
    p.add_argument("--relevance", type=float, nargs="+", default=[0.9, 0.5, 0.1], help="P")
    p.add_argument("--ambiguity", type=float, nargs="+", default=[0.3, 0.6, 0.9], help="Q")
    p.add_argument("--spurious", type=float, nargs="+", default=[0.0, 1.0], help="S (training only)")
    p.add_argument("--misleading", type=float, nargs="+", default=[0.25, 0.5], help="M")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--train-clips", type=int, default=1000)
    p.add_argument("--test-clips", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--report", type=Path, default=None, help="write the tables and this plot from OUT/rows.jsonl"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows_path = args.out / "rows.jsonl"
    if args.report:
        import matched_report

        print(matched_report.report(rows_path, args.report))
        return 0
    if 0.0 not in args.spurious:
        raise SystemExit("--spurious must include 0: the test sets are drawn at S = 0")
    cells = [(p_, m, s) for p_ in args.relevance for m in args.misleading for s in args.spurious]
    pools = {}
    for seed in args.seeds:
        for split, base, n in (
            ("train", TRAIN_SEED_BASE, args.train_clips),
            ("test", TEST_SEED_BASE, args.test_clips),
        ):
            split_cells = cells if split == "train" else [c for c in cells if c[2] == 0.0]
            pool = build_pool(
                args.out / "pools" / f"{split}_{seed}.npz",
                base + seed,
                n,
                args.ambiguity,
                split_cells,
                args.workers,
            )
            # test pools hold the S = 0 cells only: index them like the training cells
            if split == "test":
                pos = [split_cells.index((c[0], c[1], 0.0)) for c in cells]
                pool = pool | {k: pool[k][pos] for k in ("audio_row", "kind", "source")}
            pools[(split, seed)] = pool
    demo = load_model(DEMO)
    savlds = {k: B.build_savld(demo.audio_labels, k=k) for k in {VARIANTS[v].savld_k for v in args.variants}}
    done = set()
    if rows_path.is_file():
        for line in rows_path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["seed"], r["Q"], r["P"], r["M"], r["S"], r["variant"]))
    jobs = grid_jobs(args, pools, cells, savlds, demo.ast.embed_dim, done)
    log.info("%d runs to do (%d done)", len(jobs), len(done))
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool, open(rows_path, "a", encoding="utf-8") as f:
        for i, row in enumerate(pool.imap_unordered(run_one, jobs)):
            f.write(json.dumps(row) + "\n")
            f.flush()
            if i % 20 == 0:
                log.info("%d/%d runs, %.0f s", i + 1, len(jobs), time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
