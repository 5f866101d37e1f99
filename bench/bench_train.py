"""Training throughput of IMD on one GPU, and whether data loading keeps up.

Measures, for a model size (default ``base``) in bf16 autocast:

* training clips/s of full optimiser steps (forward + backward + AdamW) with the AST
  frozen and its outputs taken from the cache (what every epoch after the first does),
* peak GPU memory,
* achieved TFLOP/s, counting the FLOPs of one step with ``torch.utils.flop_counter``,
  against a measured bf16 ceiling (``--ceiling``, 782 TFLOP/s on the H100 used here),
* with ``--data-clips N``: the DataLoader rate (clips/s) over N generated 10 s 640x360
  H.264+AAC clips decoded and preprocessed for the model (``--workers`` processes).

Run on the GPU machine from the repository root::

    .venv/bin/python bench/bench_train.py --size base --batch-size 32 --steps 20
    .venv/bin/python bench/bench_train.py --size base --compile --data-clips 96 --workers 16

Prints one JSON object (and a Markdown row for docs/PERFORMANCE.md). No hub access:
the AST is built from its architecture with random weights (speed does not depend on
the weights), the ViT streams are randomly initialised too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The AudioSet AST architecture (MIT/ast-finetuned-audioset-10-10-0.4593) without weights.
AST_BASE = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "patch_size": 16, "frequency_stride": 10, "time_stride": 10, "max_length": 1024, "num_mel_bins": 128,
    "id2label": {str(i): f"label {i}" for i in range(527)}, "label2id": {f"label {i}": i for i in range(527)},
}


def build_model(size: str, num_classes: int, device: torch.device):
    from imd_core.model.config import ModelConfig
    from imd_core.model.imd_model import IMDModel

    overrides = {"ast_source": None, "ast_config": AST_BASE} if size != "tiny" else {}
    cfg = ModelConfig.from_dict({"size": size, "labels": [f"class {i}" for i in range(num_classes)], **overrides})
    return IMDModel(cfg).to(device)


def bench_steps(args: argparse.Namespace, device: torch.device) -> dict:
    from imd_core.train.steps import autocast_context

    model = build_model(args.size, args.classes, device)
    cfg = model.config
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    step_model = torch.compile(model) if args.compile else model
    b, t, s = args.batch_size, cfg.num_frames, cfg.image_size
    g = torch.Generator(device=device).manual_seed(0)
    rgb = torch.randn(b, t, 3, s, s, device=device, generator=g)
    motion = torch.randn(b, t, 3, s, s, device=device, generator=g)
    emb = torch.randn(b, model.ast.embed_dim, device=device, generator=g)
    alog = torch.randn(b, len(model.audio_labels), device=device, generator=g)
    labels = torch.randint(0, args.classes, (b,), device=device, generator=g)
    present = torch.ones(b, dtype=torch.bool, device=device)
    target = torch.rand(b, device=device, generator=g)

    def step() -> None:
        with autocast_context(device, "bf16" if device.type == "cuda" else "fp32"):
            out = step_model(rgb, motion, audio_embedding=emb, audio_logits=alog, audio_present=present,
                             labels=labels, relevance_target=target)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # eager, one step: FLOPs of fwd+bwd
        with autocast_context(device, "bf16" if device.type == "cuda" else "fp32"):
            out = model(rgb, motion, audio_embedding=emb, audio_logits=alog, audio_present=present,
                        labels=labels, relevance_target=target)
        out.loss.backward()
    opt.zero_grad(set_to_none=True)
    flops_per_step = counter.get_total_flops()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    clips_per_s = b * args.steps / dt
    tflops = flops_per_step * args.steps / dt / 1e12
    return {
        "size": args.size, "batch_size": b, "frames": t, "image_size": s, "compile": args.compile,
        "params_total_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "params_trainable_m": round(sum(p.numel() for p in params) / 1e6, 1),
        "step_s": round(dt / args.steps, 4), "clips_per_s": round(clips_per_s, 1),
        "gflop_per_clip_train": round(flops_per_step / b / 1e9, 1),
        "tflops": round(tflops, 1), "ceiling_tflops": args.ceiling,
        "fraction_of_ceiling": round(tflops / args.ceiling, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }


def bench_data(args: argparse.Namespace) -> dict:
    """DataLoader clips/s over generated 10 s 640x360 clips, preprocessed for the model."""
    from imd_core.data.dataset import ClipDataset, make_loader
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.model.config import ModelConfig
    from tests.media_factory import write_clip

    cfg = ModelConfig.from_dict({"size": args.size, "labels": ["a", "b"], "ast_source": None, "ast_config": AST_BASE})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        n_unique = min(args.data_clips, 16)  # encode a few, link the rest: decoding is what we time
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
        sources = [write_clip(root / f"src_{i}.mp4", seconds=10.0, fps=25, width=640, height=360,
                              pattern="texture", seed=i) for i in range(n_unique)]
        for i in range(args.data_clips):
            os.link(sources[i % n_unique], root / ("a" if i % 2 else "b") / f"clip_{i}.mp4")
        for src in sources:
            src.unlink()
        index = load_dataset_index(root)
        ds = ClipDataset(index, ClipPreprocessor.from_model_config(cfg), train=True)
        loader = make_loader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                             pin_memory=torch.cuda.is_available())
        t0, n, first = time.perf_counter(), 0, None
        for batch in loader:
            n += int(batch["label"].shape[0])
            if first is None:
                first = time.perf_counter() - t0
        dt = time.perf_counter() - t0
    return {"data_clips": n, "workers": args.workers, "data_clips_per_s": round(n / dt, 1),
            "data_first_batch_s": round(first or 0.0, 2), "cpu_count": os.cpu_count()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="base", choices=("tiny", "small", "base", "large"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--ceiling", type=float, default=782.0, help="measured bf16 dense TFLOP/s of the card")
    p.add_argument("--data-clips", type=int, default=0, help="also time the DataLoader on this many clips")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--skip-steps", action="store_true", help="only the data-loading measurement")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    result: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%d", time.gmtime())}
    if not args.skip_steps:
        result.update(bench_steps(args, device))
    if args.data_clips:
        result.update(bench_data(args))
    print(json.dumps(result))
    if "clips_per_s" in result:
        precision = ("bf16" if device.type == "cuda" else "fp32") + (" + compile" if args.compile else "")
        print(f"| {result['device']} | {result['size']} | {precision} | {result['batch_size']} | "
              f"{result['clips_per_s']} | {result['tflops']} ({result['fraction_of_ceiling']:.0%}) | {result['peak_memory_gib']} GiB |")


if __name__ == "__main__":
    main()
