"""The GPU half of ``bench_inference.py`` (``gpu`` mode) and the timing helpers both halves use.

See ``bench_inference.py`` for the command line; this module holds the models (IMD sizes
with random weights, the HF references), the eager measurement, the whole-forward
compiled measurement and the ``--quick`` plan.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from imd_core.inference.device import autocast_context, synchronize


# ---------------------------------------------------------------------------- timing
def time_calls(fn, device: torch.device, *, warmup: int = 3, min_seconds: float = 3.0, max_calls: int = 200):
    """Median and mean wall seconds per call of ``fn`` (device synchronised), and the call count.

    ``time_calls.cpu_seconds`` is left holding the median process CPU time per call: on
    a shared machine it tells what the work costs when it has the cores to itself.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    cpu: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while (time.perf_counter() < t_end or len(times) < 5) and len(times) < max_calls:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    time_calls.cpu_seconds = statistics.median(cpu)
    return statistics.median(times), statistics.fmean(times), len(times)


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def machine() -> dict:
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


# ---------------------------------------------------------------------------- models
def imd_random(size: str, device: torch.device):
    """IMD ``size`` with random weights and an AST-base-shaped tagger (527 labels, 10.24 s).

    ``tiny`` keeps the preset's own tiny tagger (the CPU dry run). Built on ``device``
    directly: initialising IMD-large's 446M parameters on the CPU would take seconds.
    """
    from transformers import ASTConfig

    from imd_core.model.config import ModelConfig
    from imd_core.model.imd_model import IMDModel

    labels = [f"class {i}" for i in range(400)]
    ast = ASTConfig(num_labels=527).to_diff_dict() if size != "tiny" else None
    overrides = {"labels": labels}
    if ast is not None:
        overrides.update(ast_source=None, ast_config=ast)
    cfg = ModelConfig.for_size(size, **overrides)
    try:
        with torch.device(device):
            return IMDModel(cfg, load_pretrained=False).eval()
    except Exception as exc:  # noqa: BLE001 -- never lose a GPU run to an init detail
        print(
            f"building IMD-{size} on {device} failed ({exc!r}); building on the CPU and moving it", flush=True
        )
        return IMDModel(cfg, load_pretrained=False).to(device).eval()


def imd_inputs(model, batch: int, device: torch.device):
    c = model.config
    rgb = torch.randn(batch, c.num_frames, 3, c.image_size, c.image_size, device=device)
    fbank = torch.randn(batch, c.max_length, c.num_mel_bins, device=device)
    present = torch.ones(batch, dtype=torch.bool, device=device)
    return rgb, rgb.clone(), fbank, present


def hf_baseline(name: str, device: torch.device, *, tiny: bool = False):
    """(model, make_inputs(batch)) of a Hugging Face baseline with random weights.

    ``tiny``: the same classes at toy sizes (2 layers of width 64, 32 px), for the CPU dry run.
    """
    import transformers as tf

    small = (
        dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
        if tiny
        else {}
    )
    px, frames8, frames16 = (32, 4, 4) if tiny else (224, 8, 16)
    if name == "timesformer-base":
        cfg = tf.TimesformerConfig(num_frames=frames8, image_size=px, num_labels=400, **small)
        cls = tf.TimesformerForVideoClassification

        def inputs(b):
            return {"pixel_values": torch.randn(b, frames8, 3, px, px, device=device)}
    elif name == "videomae-base":
        cfg = tf.VideoMAEConfig(num_frames=frames16, image_size=px, num_labels=400, **small)
        cls = tf.VideoMAEForVideoClassification

        def inputs(b):
            return {"pixel_values": torch.randn(b, frames16, 3, px, px, device=device)}
    elif name == "ast-base":
        cfg = tf.ASTConfig(num_labels=527, **(dict(small, max_length=128) if tiny else {}))
        cls = tf.ASTForAudioClassification

        def inputs(b):
            return {"input_values": torch.randn(b, cfg.max_length, cfg.num_mel_bins, device=device)}
    else:
        raise SystemExit(f"unknown baseline {name!r}; choose timesformer-base, videomae-base, ast-base")
    try:
        with torch.device(device):
            model = cls(cfg)  # transformers picks SDPA where the class supports it (not TimeSformer)
    except Exception as exc:  # noqa: BLE001 -- never lose a GPU run to an init detail
        print(f"building {name} on {device} failed ({exc!r}); building on the CPU and moving it", flush=True)
        model = cls(cfg).to(device)
    cfg._attn_implementation = "sdpa"  # as the eager reference run of 2026-11-27 did
    return model.eval(), inputs


# ---------------------------------------------------------------------------- GPU
def bench_gpu_model(name, forward, make_inputs, device, batches, peak_tflops, min_seconds):
    """Eager: FLOPs per clip, batch-1 median latency, best throughput over ``batches`` (stops at OOM)."""
    row = {"model": name, "compile": "none"}
    with torch.inference_mode(), autocast_context(device):
        x1 = make_inputs(1)
        row["gflops_per_clip"] = count_flops(lambda: forward(x1)) / 1e9
        med, _, _ = time_calls(lambda: forward(x1), device, warmup=10, min_seconds=min_seconds)
        row["latency_ms_b1"] = med * 1e3
        best = (0.0, 1)
        for b in batches:
            try:
                xb = make_inputs(b)
                med, _, _ = time_calls(lambda xb=xb: forward(xb), device, warmup=3, min_seconds=min_seconds)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                break
            if b / med > best[0]:
                best = (b / med, b)
            del xb
    row["best_batch"], row["clips_per_s"] = best[1], best[0]
    row["tflops"] = best[0] * row["gflops_per_clip"] / 1e3
    row["fraction_of_peak"] = row["tflops"] / peak_tflops
    return row


def bench_imd_compiled(model, name, eager_row, mode, batch, device, args) -> dict:
    """The whole forward as one compiled graph (``CompiledForward``) at one static batch size.

    Reports the compile + warm-up time, whether it stayed one graph (else the break
    reason), and the latency / throughput at ``batch``; a recompile while timing (a
    guard that does not hold) is an error in the row rather than a wrong number.
    """
    from imd_core.inference.device import CompiledForward

    if mode == "reduce-overhead" and device.type != "cuda":
        mode = "default"  # the CPU dry run: CUDA graphs need CUDA
    from torch._dynamo.utils import counters

    row = {"model": name, "compile": mode, "batch": batch, "gflops_per_clip": eager_row["gflops_per_clip"]}
    torch._dynamo.reset()
    counters.clear()
    try:
        fwd = CompiledForward(model, mode, device, backend=args.compile_backend)
        x = imd_inputs(model, batch, device)

        def call():
            return fwd(x[0], x[1], fbank=x[2], audio_present=x[3]).logits

        with torch.inference_mode(), autocast_context(device):
            t0 = time.perf_counter()
            for _ in range(3):  # compile, then (reduce-overhead) warm-up run and CUDA-graph recording
                call()
            synchronize(device)
            row["compile_s"] = time.perf_counter() - t0
            with torch._dynamo.config.patch(error_on_recompile=True):
                med, _, n = time_calls(call, device, warmup=5, min_seconds=args.seconds)
            # the same inputs through the eager model: the compiled graph computes the same thing
            ref = model(x[0], x[1], fbank=x[2], audio_present=x[3]).logits.float()
            got = call().float()
            row["max_abs_diff_vs_eager"] = float((got - ref).abs().max())
        # graphs dynamo captured: 1 is the whole forward; 0 would mean the "compiled" timing ran
        # eager code (as the 04:09 run did after its first call under FlopCounterMode)
        row["graphs"] = int(counters["stats"]["unique_graphs"])
        if mode == "reduce-overhead":  # > 0: inductor ran the graph without CUDA graphs (reason in the log)
            row["cudagraph_skips"] = int(counters["inductor"]["cudagraph_skips"])
        if row["graphs"] == 0:
            raise RuntimeError("dynamo captured no graph: the compiled timing would be eager code")
    except Exception as exc:  # noqa: BLE001 -- one failed compile must not lose the other rows
        text = str(exc).strip().splitlines()
        row["error"] = f"{type(exc).__name__}: {text[0][:300] if text else ''}"
        return row
    finally:
        torch._dynamo.reset()
    row["fullgraph"], row["break_reason"] = fwd.fullgraph, fwd.break_reason
    row["calls"] = n
    if batch == 1:
        row["latency_ms_b1"] = med * 1e3
    row["best_batch"], row["clips_per_s"] = batch, batch / med
    row["tflops"] = row["clips_per_s"] * row["gflops_per_clip"] / 1e3
    row["fraction_of_peak"] = row["tflops"] / args.peak_tflops
    return row


QUICK = {  # one bounded run that answers the goals (bench/gpu_all.sh)
    "sizes": ["small", "base", "large"],
    "baselines": ["timesformer-base", "videomae-base", "ast-base"],
    "batches": [1, 32, 64, 128],
    "seconds": 0.5,
    "compile_sizes": ["base"],
    "compile_b1": "reduce-overhead",
    "compile_best": "default",
    "budget": 185.0,
}
T_START = time.perf_counter()


def run_gpu(args) -> list[dict]:
    if args.device == "cpu" or args.on_cpu:  # a functional dry run of this mode where there is no GPU
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run `bench_inference.py cpu` here, `gpu` on a GPU machine")
    else:
        device = torch.device("cuda")
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.tiny:  # dry run: the tiny preset and toy-sized baselines, few batches, a short time
        args.sizes = ["tiny"]
        args.compile_sizes = ["tiny"] if args.compile_sizes else []
        args.batches, args.seconds = [1, 2], min(args.seconds, 0.2)
    torch.backends.cuda.matmul.allow_tf32 = True
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        print(row, flush=True)
        if args.json:  # after every row: a run cut short by its timeout keeps what it measured
            Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")

    # 1. eager: every IMD size, then the HF references (cheap, so they come first)
    eager, keep = {}, {}
    for size in args.sizes:
        model = imd_random(size, device)
        add(
            bench_gpu_model(
                f"IMD-{size}",
                lambda x, model=model: model(x[0], x[1], fbank=x[2], audio_present=x[3]).logits,
                lambda b, m=model: imd_inputs(m, b, device),
                device,
                args.batches,
                args.peak_tflops,
                args.seconds,
            )  # fmt: skip
        )
        eager[size] = rows[-1]
        if size in (args.compile_sizes or []):
            keep[size] = model  # compiled below (rebuilding IMD-base costs seconds)
        del model
        _free(device)
    for name in args.baselines:
        model, make = hf_baseline(name, device, tiny=args.tiny)
        add(
            bench_gpu_model(
                f"HF {name}" + (" (toy size)" if args.tiny else ""),
                lambda x, m=model: m(**x).logits,
                make,
                device,
                args.batches,
                args.peak_tflops,
                args.seconds,
            )  # fmt: skip
        )
        del model
        _free(device)
    # 2. the whole IMD forward compiled: batch 1 (CUDA graphs) and the eager best batch
    for size in args.compile_sizes or []:
        model = keep.pop(size, None) or imd_random(size, device)
        plan = [(args.compile_b1, 1), (args.compile_best, eager[size]["best_batch"])]
        for mode, batch in plan:
            if mode == "none":
                continue
            left = (args.budget or float("inf")) - (time.perf_counter() - T_START)
            if left < 50:  # a compile of IMD-base takes tens of seconds: do not start one that cannot finish
                add({"model": f"IMD-{size}", "compile": mode, "batch": batch,
                     "error": f"skipped: {left:.0f} s left of the --budget of {args.budget:.0f} s"})  # fmt: skip
                continue
            add(bench_imd_compiled(model, f"IMD-{size}", eager[size], mode, batch, device, args))
        del model
        _free(device)
    return rows


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
