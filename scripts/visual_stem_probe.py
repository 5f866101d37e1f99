"""Which patch embedding lets a visual stream learn SynthAV from scratch? (RGB stream only.)

Trains one ``VisualStream`` + linear classifier for a fixed wall-clock budget on the
demo build's cached training frames (``runs/demo/cache_*.npz``, written by
``scripts/build_demo.py``) and prints held-out top-1 on SynthAV seed 777 every 100 steps.
Video only: no audio, so the number is what the pixels alone support. Used to choose
``ModelConfig.patch_stem`` for the demo model (docs/RESULTS.md)::

    .venv/bin/python scripts/visual_stem_probe.py conv 10 &
    .venv/bin/python scripts/visual_stem_probe.py linear 10 &   # one torch thread each
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from build_demo import read_manifest  # noqa: E402

from imd_core.model.video_transformer import VisualStream  # noqa: E402
from imd_core.synth.classes import ACTION_CLASSES  # noqa: E402

TRAIN = [
    ("cache_s1_2400_2400_64.npz", "/tmp/s1_2400", None),
    ("cache_s2_2400_2400_64.npz", "/tmp/s2_2400", None),
    ("cache_train898_64.npz", "/tmp/s1000", ("train", "val")),
]


def load(work: Path, cache: str, folder: str, splits) -> tuple[np.ndarray, np.ndarray]:
    with np.load(work / cache) as z:
        frames = z["frames"]
    rows = read_manifest(Path(folder), splits)
    if len(rows) != len(frames):
        raise SystemExit(f"{cache} holds {len(frames)} clips but {folder} lists {len(rows)}")
    return frames, np.array([ACTION_CLASSES.index(r["label"]) for r in rows])


def batch(frames: np.ndarray, idx: np.ndarray, train: bool, rng: np.random.Generator) -> torch.Tensor:
    """uint8 ``(B, K, S, S, 3)`` -> float ``(B, 8, 3, 64, 64)`` in [-1, 1]; TSN frames, crop, flip."""
    f = frames[idx]
    if train:
        k = f.shape[1]
        seg = k / 8
        ti = np.minimum((np.arange(8) * seg + rng.random((len(idx), 8)) * seg).astype(int), k - 1)
        f = np.stack([f[i, ti[i]] for i in range(len(idx))])
        out = np.empty(f.shape[:2] + (64, 64, 3), np.uint8)
        for i in range(len(f)):
            t, left = rng.integers(0, f.shape[2] - 63, 2)
            out[i] = f[i, :, t : t + 64, left : left + 64]
            if rng.random() < 0.5:
                out[i] = out[i, :, :, ::-1]
        f = out
    x = torch.from_numpy(np.ascontiguousarray(f)).float().div_(127.5).sub_(1.0)
    return x.permute(0, 1, 4, 2, 3).contiguous()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stem", choices=["linear", "conv"])
    p.add_argument("minutes", type=float)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "demo")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    parts = [load(args.work, *t) for t in TRAIN]
    x_train, y_train = np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts])
    x_test, y_test = load(args.work, "cache_test_64.npz", str(args.work / "synth_test_seed777"), None)
    stream = VisualStream(
        num_frames=8,
        image_size=64,
        patch_size=16,
        embed_dim=192,
        depth=4,
        num_heads=3,
        mlp_ratio=4.0,
        st_depth=1,
        st_dim=96,
        st_heads=2,
        patch_stem=args.stem,
    )
    model = nn.Sequential(stream, nn.Linear(192, len(ACTION_CLASSES)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    rng = np.random.default_rng(0)

    def top1() -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat(
                [
                    model(batch(x_test, np.arange(i, min(i + 50, len(x_test))), False, rng)).argmax(1)
                    for i in range(0, len(x_test), 50)
                ]
            )
        model.train()
        return float((pred.numpy() == y_test).mean())

    t0, step, budget = time.time(), 0, args.minutes * 60
    while time.time() - t0 < budget:
        idx = rng.integers(0, len(x_train), 32)
        frac = (time.time() - t0) / budget  # warm-up then cosine over the time budget
        for g in opt.param_groups:
            g["lr"] = 1e-3 * min(1.0, frac * 20) * 0.5 * (1 + np.cos(np.pi * frac))
        loss = F.cross_entropy(model(batch(x_train, idx, True, rng)), torch.from_numpy(y_train[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(
                f"{args.stem} {time.time() - t0:.0f}s step {step} loss {loss.item():.3f} "
                f"held-out top-1 {top1():.3f}",
                flush=True,
            )
    print(f"FINAL {args.stem}: {step} steps, held-out top-1 {top1():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
