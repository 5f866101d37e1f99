"""Training throughput of IMD on one GPU, and whether data loading keeps up.

Measures, for a model size (default ``base``) in bf16 autocast:

* training clips/s of full optimiser steps (forward + backward + AdamW) with the AST
  frozen and its outputs taken from the cache (what every epoch after the first does),
* the same with ``torch.compile`` of the whole forward + loss (``--modes eager,compile``,
  what ``compile=true`` does in the engine; the first step's time is the compile time),
* peak GPU memory,
* achieved TFLOP/s, counting the FLOPs of one step with ``torch.utils.flop_counter``,
  against a measured bf16 ceiling (``--ceiling``, 782 TFLOP/s on the H100 used here),
* with ``--data-clips N``: the DataLoader rate (clips/s) over N generated 10 s 640x360
  H.264+AAC clips decoded and preprocessed for the model (``--workers`` processes).

Run on the GPU machine from the repository root::

    python bench/bench_train.py --quick --json $OUT/train_gpu.json    # base, eager and compiled
    .venv/bin/python bench/bench_train.py --size base --batch-size 32 --steps 20 --modes eager,compile
    .venv/bin/python bench/bench_train.py --size base --skip-steps --data-clips 96 --workers 16

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
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "patch_size": 16,
    "frequency_stride": 10,
    "time_stride": 10,
    "max_length": 1024,
    "num_mel_bins": 128,
    "id2label": {str(i): f"label {i}" for i in range(527)},
    "label2id": {f"label {i}": i for i in range(527)},
}


def build_model(size: str, num_classes: int, device: torch.device):
    from imd_core.model.config import ModelConfig
    from imd_core.model.imd_model import IMDModel

    overrides = {"ast_source": None, "ast_config": AST_BASE} if size != "tiny" else {}
    cfg = ModelConfig.from_dict(
        {"size": size, "labels": [f"class {i}" for i in range(num_classes)], **overrides}
    )
    return IMDModel(cfg).to(device)


def bench_steps(args: argparse.Namespace, device: torch.device, mode: str) -> dict:
    """Times optimiser steps in one mode: ``eager`` or ``compile`` (the engine's
    ``compile=true``: the whole forward + loss compiled as one graph, fullgraph)."""
    from imd_core.inference.device import autocast_context
    from imd_core.train.steps import compile_train_model

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model(args.size, args.classes, device)
    cfg = model.config
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    compiled = mode == "compile"
    step_model = compile_train_model(model, fullgraph=True, mode=args.compile_mode) if compiled else model
    b, t, s = args.batch_size, cfg.num_frames, cfg.image_size
    g = torch.Generator(device=device).manual_seed(0)
    rgb = torch.randn(b, t, 3, s, s, device=device, generator=g)
    motion = torch.randn(b, t, 3, s, s, device=device, generator=g)
    emb = torch.randn(b, model.ast.embed_dim, device=device, generator=g)
    alog = torch.randn(b, len(model.audio_labels), device=device, generator=g)
    labels = torch.randint(0, args.classes, (b,), device=device, generator=g)
    present = torch.ones(b, dtype=torch.bool, device=device)
    target = torch.rand(b, device=device, generator=g)
    precision = "bf16" if device.type == "cuda" else "fp32"

    def step() -> float:
        with autocast_context(device, precision):
            out = step_model(
                rgb,
                motion,
                audio_embedding=emb,
                audio_logits=alog,
                audio_present=present,
                labels=labels,
                relevance_target=target,
            )
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # eager, one step: FLOPs of fwd+bwd
        with autocast_context(device, precision):
            out = model(
                rgb,
                motion,
                audio_embedding=emb,
                audio_logits=alog,
                audio_present=present,
                labels=labels,
                relevance_target=target,
            )
        out.loss.backward()
    opt.zero_grad(set_to_none=True)
    flops_per_step = counter.get_total_flops()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t_first = time.perf_counter()
    step()  # the first step compiles (compile mode)
    sync()
    first_step_s = time.perf_counter() - t_first
    for _ in range(max(0, args.warmup - 1)):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    clips_per_s = b * args.steps / dt
    tflops = flops_per_step * args.steps / dt / 1e12
    return {
        "mode": mode,
        "compile_mode": args.compile_mode if compiled else None,
        "size": args.size,
        "batch_size": b,
        "frames": t,
        "image_size": s,
        "params_total_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "params_trainable_m": round(sum(p.numel() for p in params) / 1e6, 1),
        "first_step_s": round(first_step_s, 2),
        "steps": args.steps,
        "step_s": round(dt / args.steps, 4),
        "step_cpu_s": round(cpu / args.steps, 4),
        "clips_per_s": round(clips_per_s, 1),
        "last_loss": round(float(loss.detach()), 5),
        "gflop_per_clip_train": round(flops_per_step / b / 1e9, 1),
        "tflops": round(tflops, 1),
        "ceiling_tflops": args.ceiling,
        "fraction_of_ceiling": round(tflops / args.ceiling, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
    }


def _loader_epoch(ds, args: argparse.Namespace, epoch: int) -> dict:
    """One pass of a worker DataLoader over ``ds``: wall clips/s and CPU ms per clip
    (workers' CPU from getrusage of the joined children + this process's)."""
    import gc
    import resource

    from imd_core.data.dataset import collate_clips
    from imd_core.train.data_order import SeededItems

    seeded = SeededItems(ds, 0)  # items seeded per (seed, epoch, index), as in training
    seeded.epoch = epoch
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0, t0, n = time.process_time(), time.perf_counter(), 0
    loader = torch.utils.data.DataLoader(
        seeded,
        batch_size=args.batch_size,
        num_workers=args.workers,
        collate_fn=collate_clips,
        pin_memory=torch.cuda.is_available(),
    )
    for batch in loader:
        n += int(batch["label"].shape[0])
    dt = time.perf_counter() - t0
    del loader
    gc.collect()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (time.process_time() - c0) + (
        children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime
    )
    return {
        "clips": n,
        "clips_per_s": round(n / dt, 2),
        "cpu_ms_per_clip": round(1000 * cpu / max(1, n), 1),
        "clips_per_s_per_core": round(n / max(cpu, 1e-9), 2),
    }


def bench_data(args: argparse.Namespace) -> dict:
    """DataLoader clips/s over generated 10 s 640x360 clips, preprocessed for the model:
    plain decoding, and with ``--frame-cache`` the decoded-frame cache's first (filling)
    and second (reading) epoch."""
    from imd_core.data.dataset import ClipDataset
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.model.config import ModelConfig
    from tests.media_factory import write_clip

    cfg = ModelConfig.from_dict(
        {"size": args.size, "labels": ["a", "b"], "ast_source": None, "ast_config": AST_BASE}
    )
    out: dict = {"data_size": args.size, "workers": args.workers, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        # encode a few and link the rest (decoding is what is timed); the frame cache keys
        # entries by content, so it needs every clip distinct
        n_unique = args.data_clips if args.frame_cache else min(args.data_clips, 16)
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
        sources = [
            write_clip(
                root / f"src_{i}.mp4", seconds=10.0, fps=25, width=640, height=360, pattern="texture", seed=i
            )
            for i in range(n_unique)
        ]
        for i in range(args.data_clips):
            os.link(sources[i % n_unique], root / ("a" if i % 2 else "b") / f"clip_{i}.mp4")
        for src in sources:
            src.unlink()
        index = load_dataset_index(root)
        pre = ClipPreprocessor.from_model_config(cfg)
        plain = _loader_epoch(ClipDataset(index, pre, train=True), args, 0)
        out.update(data_clips=plain["clips"], data_clips_per_s=plain["clips_per_s"], data_plain=plain)
        if args.frame_cache:
            from imd_core.train.frame_cache import FrameCacheDataset

            cache = Path(tmp) / "frame_cache"
            ds = FrameCacheDataset(index, pre, True, cache_dir=cache, frame_grid=args.frame_grid)
            out["data_cache_fill"] = _loader_epoch(ds, args, 0)
            out["data_cache_read"] = _loader_epoch(ds, args, 1)
            size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
            out["frame_cache_mb_per_clip"] = round(size / 2**20 / len(index), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="base", choices=("tiny", "small", "base", "large"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="steps before timing (the first one compiles)")
    p.add_argument("--modes", default="eager", help="comma-separated: eager, compile (default eager)")
    p.add_argument("--compile", action="store_true", help="same as --modes compile")
    p.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode for the compile run (default; max-autotune-no-cudagraphs, ...)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the prepared GPU check: base, batch 32, 12 timed steps after 3, eager and compile",
    )
    p.add_argument("--ceiling", type=float, default=782.0, help="measured bf16 dense TFLOP/s of the card")
    p.add_argument("--data-clips", type=int, default=0, help="also time the DataLoader on this many clips")
    p.add_argument("--workers", type=int, default=16)
    p.add_argument(
        "--frame-cache", action="store_true", help="also time the decoded-frame cache (fill and read epochs)"
    )
    p.add_argument("--frame-grid", type=int, default=4)
    p.add_argument("--skip-steps", action="store_true", help="only the data-loading measurement")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.compile:
        modes = ["compile"]
    if args.quick:
        args.steps, args.warmup, modes = 12, 3, ["eager", "compile"]
    if any(m not in ("eager", "compile") for m in modes):
        p.error(f"--modes: unknown mode in {modes}; choose from eager, compile")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    result: dict = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "threads": torch.get_num_threads(),
        "runs": [],
    }
    if device.type == "cpu":
        result["loadavg"] = os.getloadavg()
    rows = []
    if not args.skip_steps:
        for mode in modes:
            try:
                run = bench_steps(args, device, mode)
            except Exception as exc:  # a compile failure must not lose the eager numbers
                run = {
                    "mode": mode,
                    "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                }
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
            if "clips_per_s" in run:
                precision = ("bf16" if device.type == "cuda" else "fp32") + (
                    " + compile (whole step)" if mode == "compile" else ""
                )
                rows.append(
                    f"| {result['device']} | {run['size']} | {precision} | {run['batch_size']} | "
                    f"{run['clips_per_s']} | {run['tflops']} ({run['fraction_of_ceiling']:.1%}) | "
                    f"{run['peak_memory_gib']} GiB | {run['first_step_s']} s |"
                )
    if args.data_clips:
        result.update(bench_data(args))
    print(json.dumps(result))
    print("\n".join(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
