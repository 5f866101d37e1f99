"""GPU check of the IMD model (issue 3, item 10): bf16 vs fp32, throughput, peak memory.

Prepared for one short run on the GPU machine (needs CUDA; no model hub: the AST is the
public AudioSet architecture with random weights, which has the same cost):

    .venv/bin/python bench/gpu_check.py --size base --batch-size 8 --out $OUT/gpu_check.json \
        --perf-md docs/PERFORMANCE.md

1. Builds IMD-``size`` in fp32 (TF32 off), runs forward + backward on one random batch,
   then the same batch under ``torch.autocast("cuda", dtype=torch.bfloat16)``; reports the
   relative error ``||bf16 - fp32|| / ||fp32||`` of logits, relevance logits, the loss and
   the gradients of a few weights (goal: logits within 1e-2).
2. Times training steps (forward + backward + fused AdamW, bf16 autocast, AST frozen and
   run in every step) and eval forwards; reports clips/s and peak memory.
3. Writes a JSON record and optionally appends a Markdown table row to PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imd_core.model.flops import build_for_size  # noqa: E402
from imd_core.model.imd_model import IMDModel  # noqa: E402


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / a.norm().clamp(min=1e-12))


def make_model(size: str, num_classes: int, device: torch.device) -> IMDModel:
    meta = build_for_size(size, num_classes=num_classes)  # config with the AudioSet AST architecture
    torch.manual_seed(0)
    return IMDModel(meta.config, load_pretrained=False).to(device)


def batch(cfg, n: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape = (n, cfg.num_frames, 3, cfg.image_size, cfg.image_size)
    return {
        "rgb": torch.randn(shape, generator=g).to(device),
        "motion": (0.2 * torch.randn(shape, generator=g)).to(device),
        "fbank": torch.randn(n, cfg.max_length, cfg.num_mel_bins, generator=g).to(device),
        "labels": torch.randint(0, cfg.num_classes, (n,), generator=g).to(device),
        "relevance_target": (torch.rand(n, generator=g) > 0.5).float().to(device),
    }


def forward_backward(model: IMDModel, x: dict, bf16: bool):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        out = model(**x)
    out.loss.backward()
    names = [
        "head.weight",
        "video.rgb.blocks.0.attn.qkv.weight",
        "video.motion.st_blocks.0.up.weight",
        "relevance.fc1.weight",
        "fusion.gates.weight",
    ]
    params = dict(model.named_parameters())
    grads = {n: params[n].grad.detach().clone() for n in names if n in params and params[n].grad is not None}
    return out, grads


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="base", choices=["tiny", "small", "base", "large"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", default=None, help="JSON result file")
    p.add_argument("--perf-md", default=None, help="append a table row to this PERFORMANCE.md")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this script is for the GPU machine", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    card = torch.cuda.get_device_name(0)
    model = make_model(args.size, args.num_classes, dev).train()
    cfg = model.config
    x = batch(cfg, args.batch_size, dev)

    # 1. accuracy: the same batch in fp32 and in bf16 autocast
    out32, g32 = forward_backward(model, x, bf16=False)
    out16, g16 = forward_backward(model, x, bf16=True)
    errors = {
        "logits": rel_err(out32.logits, out16.logits),
        "relevance_logit": rel_err(out32.relevance_logit, out16.relevance_logit),
        "loss": rel_err(out32.loss.detach().reshape(1), out16.loss.detach().reshape(1)),
        **{f"grad:{k}": rel_err(g32[k], g16[k]) for k in g32 if k in g16},
    }
    ok = errors["logits"] <= 1e-2

    # 2. throughput: training steps (bf16 autocast, fused AdamW) and eval forwards
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4, fused=True)
    torch.cuda.reset_peak_memory_stats()

    def train_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(**x)
        out.loss.backward()
        opt.step()

    for _ in range(2):
        train_step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    torch.cuda.synchronize()
    train_s = (time.perf_counter() - t) / args.steps
    train_peak = torch.cuda.max_memory_allocated() / 2**30

    model.eval()
    torch.cuda.reset_peak_memory_stats()
    ex = {k: x[k] for k in ("rgb", "motion", "fbank")}
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(2):
            model(**ex)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.steps):
            model(**ex)
        torch.cuda.synchronize()
    eval_s = (time.perf_counter() - t) / args.steps
    eval_peak = torch.cuda.max_memory_allocated() / 2**30

    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "card": card,
        "torch": torch.__version__,
        "size": args.size,
        "batch_size": args.batch_size,
        "frames": cfg.num_frames,
        "image_size": cfg.image_size,
        "bf16_vs_fp32_rel_error": errors,
        "bf16_logits_within_1e-2": ok,
        "train_clips_per_s": round(args.batch_size / train_s, 2),
        "train_peak_gib": round(train_peak, 2),
        "eval_clips_per_s": round(args.batch_size / eval_s, 2),
        "eval_peak_gib": round(eval_peak, 2),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.perf_md:
        row = (
            f"| {result['date']} | {card} | {args.size} | {args.batch_size} | {errors['logits']:.2e} | "
            f"{result['train_clips_per_s']} | {result['train_peak_gib']} GiB | {result['eval_clips_per_s']} | "
            f"{result['eval_peak_gib']} GiB |\n"
        )
        with open(args.perf_md, "a", encoding="utf-8") as fh:
            fh.write(row)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
