"""Inference speed: the demo model on CPU, IMD small/base/large and HF baselines on GPU.

CPU (what the app runs on a laptop)::

    .venv/bin/python bench/bench_inference.py cpu --threads 2

measures, for the demo model (or ``--model DIR``; a random tiny model when neither
exists), at batch 1:

* ``model``: the forward pass alone on preprocessed tensors (windows/s, latency);
* ``window``: preprocessing + forward from raw frames and audio (what the streaming
  engine does per window);
* ``file``: ``Predictor.predict_path`` on a generated clip with ``--window``/``--hop``
  (decode + preprocessing + forward);
* ``streaming``: a :class:`StreamingEngine` fed by a thread that decodes a generated
  30 fps 640x360 video in real time (the app's playback load) while the calling thread
  runs windows as fast as it can (hop 0.02 s: one is due at every frame, so at most
  30 windows/s): windows/s, mean latency, skipped windows.

GPU::

    python bench/bench_inference.py gpu --quick --json out.json      # what bench/gpu_all.sh runs

measures batch-1 latency (median) and best-batch throughput of IMD small/base/large end
to end (AST + both streams + relevance + fusion, random weights, bf16 autocast) and, in
the same run, HF TimeSformer-base, VideoMAE-base and AST-base (random weights), all in
eager mode; then IMD's whole forward compiled as one graph (``CompiledForward``:
``torch.compile(fullgraph=True, dynamic=False)``), ``--compile-b1`` (``--quick``:
reduce-overhead = CUDA graphs) at batch 1 and ``--compile`` (``--quick``: default) at
the eager best batch, for ``--compile-sizes`` (``--quick``: base only, to bound the
compile time), with the compile time, whether it stayed one graph, and the largest
difference from the eager logits. FLOPs per clip from ``torch.utils.flop_counter`` give
the achieved TFLOP/s and the fraction of ``--peak-tflops`` (782: the bf16
matrix-product ceiling measured on the H200 used for this project).

Dry run on a CPU (checks the script, not the speed)::

    .venv/bin/python bench/bench_inference.py gpu --quick --device cpu --tiny --compile-backend eager

Both print a table and write ``--json`` results; docs/PERFORMANCE.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

# As the imd entry point does: OpenMP threads sleep rather than spin (must precede torch).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imd_core.inference.device import autocast_context, synchronize  # noqa: E402
from imd_core.inference.inputs import WindowInput  # noqa: E402


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
def tiny_random_model_dir(folder: Path) -> Path:
    from imd_core.model.checkpoint import save_model
    from imd_core.model.config import ModelConfig
    from imd_core.model.imd_model import IMDModel

    cfg = ModelConfig.for_size("tiny", labels=[f"class {i}" for i in range(8)])
    save_model(IMDModel(cfg, load_pretrained=False), folder)
    return folder


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


# ---------------------------------------------------------------------------- CPU
def _raw_window(pred, rng) -> WindowInput:
    # Frames as the streaming engine stores them (downscaled on push to ~8/7 of the crop).
    side = int(np.ceil(pred.image_size * 8 / 7))
    frames = rng.integers(0, 255, (pred.num_frames, side, side * 16 // 9, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(int(pred.audio_seconds * 16000))).astype(np.float32)
    return WindowInput(frames=frames, audio=audio, path="bench", start=0.0, end=pred.audio_seconds)


def run_cpu(args) -> list[dict]:
    from imd_core.inference.predictor import Predictor
    from imd_core.resources import demo_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="imd-bench-"))
    model_dir = Path(args.model) if args.model else demo_model_dir()
    source = str(model_dir)
    if not (model_dir / "config.json").is_file():
        model_dir, source = tiny_random_model_dir(tmp / "tiny"), "random tiny (no demo model found)"
    pred = Predictor(model_dir, device="cpu", threads=args.threads, batch_size=1)
    device = pred.device
    rng = np.random.default_rng(0)
    rows = []

    item = _raw_window(pred, rng)
    x = pred.preprocess(item)
    rgb, motion, fbank = (x[k].unsqueeze(0) for k in ("rgb", "motion", "fbank"))
    present = torch.tensor([True])
    with torch.inference_mode():
        gflops = count_flops(lambda: pred.model(rgb, motion, fbank=fbank, audio_present=present)) / 1e9
        med, mean, n = time_calls(
            lambda: pred.model.predict(rgb, motion, fbank, present), device, min_seconds=args.seconds
        )
    rows.append(
        {"stage": "model", "latency_ms": med * 1e3, "windows_per_s": 1 / mean, "calls": n,
         "cpu_ms": time_calls.cpu_seconds * 1e3, "gflops": gflops}
    )  # fmt: skip

    med, mean, n = time_calls(lambda: pred.predict_windows([item]), device, min_seconds=args.seconds)
    rows.append({"stage": "window", "latency_ms": med * 1e3, "windows_per_s": 1 / mean, "calls": n,
                 "cpu_ms": time_calls.cpu_seconds * 1e3})  # fmt: skip
    if args.compile != "none":  # the same two stages with the whole forward compiled (one graph)
        cpred = Predictor(pred.model, device="cpu", batch_size=1, compile=args.compile)
        c0 = time.process_time()
        compile_s = cpred.warmup([1])
        compile_cpu = time.process_time() - c0
        fwd = cpred.compiled_forward
        # eager and compiled alternate in rounds, so a change in the machine's load hits both
        per_round = max(1.0, args.seconds / 3)
        runs: dict[str, list] = {"eager": [], "compiled": []}
        with torch.inference_mode():
            for _ in range(3):
                for name, f in (("eager", None), ("compiled", fwd)):
                    med, mean, n = time_calls(
                        lambda f=f: pred.model.predict(rgb, motion, fbank, present, forward=f),
                        device,
                        min_seconds=per_round,
                    )
                    runs[name].append((med, mean, n, time_calls.cpu_seconds))
        for name, rs in runs.items():
            rows.append({"stage": f"model {name}, 3 interleaved rounds" + (f" ({args.compile}, fullgraph={fwd.fullgraph})" if name == "compiled" else ""),
                         "latency_ms": statistics.median(r[0] for r in rs) * 1e3,
                         "windows_per_s": sum(r[2] for r in rs) / sum(r[1] * r[2] for r in rs),
                         "calls": sum(r[2] for r in rs), "cpu_ms": statistics.median(r[3] for r in rs) * 1e3,
                         "rounds_cpu_ms": [round(r[3] * 1e3, 1) for r in rs]})  # fmt: skip
        rows[-1].update(compile_s=compile_s, compile_cpu_s=compile_cpu)
        med, mean, n = time_calls(lambda: cpred.predict_windows([item]), device, min_seconds=args.seconds)
        rows.append({"stage": f"window compiled ({args.compile})", "latency_ms": med * 1e3,
                     "windows_per_s": 1 / mean, "calls": n, "cpu_ms": time_calls.cpu_seconds * 1e3})  # fmt: skip
        if args.compile_only:
            return rows

    from imd_core.media.decode import probe  # noqa: F401 -- fail early without PyAV

    clip = write_clip(tmp / "bench.mp4", seconds=12.0, fps=30, size=(640, 360))
    window, hop = args.window or pred.audio_seconds, args.hop or 1.0
    t0, c0 = time.perf_counter(), time.process_time()
    results = pred.predict_path(clip, window=window, hop=hop)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    rows.append({"stage": f"file (window {window:g}s hop {hop:g}s)", "latency_ms": dt / len(results) * 1e3,
                 "windows_per_s": len(results) / dt, "calls": len(results),
                 "cpu_ms": dc / len(results) * 1e3})  # fmt: skip

    rows.append(bench_streaming(pred, clip, window, args.seconds * 3))
    for r in rows:
        r["model_dir"] = source
    return rows


def bench_streaming(pred, clip: Path, window: float, seconds: float) -> dict:
    """Playback at 30 fps on a thread (decode + push, paced) while windows run back to back."""
    from imd_core.inference.streaming import StreamingEngine

    # hop below the frame interval: a window is due at every new frame (<= 30 windows/s)
    engine = StreamingEngine(pred, window=window, hop=0.02)
    stop = threading.Event()

    def playback() -> None:
        import av

        t_start = time.monotonic()
        while not stop.is_set():
            with av.open(str(clip)) as container:
                for frame in container.decode(video=0):
                    if stop.is_set():
                        return
                    rgb = frame.to_ndarray(format="rgb24")  # what a player converts for display
                    t = time.monotonic()
                    engine.push_frame(rgb, t)
                    engine.push_audio(np.zeros(int(16000 / 30), np.float32), t, 16000)
                    # pace to 30 fps of wall time
                    t_next = t_start + engine.stats.frames_received / 30.0
                    delay = t_next - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

    c0 = time.process_time()
    th = threading.Thread(target=playback, daemon=True)
    th.start()
    results = []
    t_end = time.monotonic() + window + seconds
    t_first = None
    while time.monotonic() < t_end:
        r = engine.run_once()
        if r is None:
            time.sleep(0.002)
            continue
        t_first = t_first or time.monotonic()
        results.append(r)
    stop.set()
    th.join()
    cpu = time.process_time() - c0
    st = engine.stats
    dt = time.monotonic() - (t_first or time.monotonic())
    fps = st.frames_received / (window + seconds)
    return {
        "stage": "streaming while playing 30 fps 640x360",
        "latency_ms": (st.mean_latency or float("nan")) * 1e3,
        "windows_per_s": (len(results) - 1) / dt if dt > 0 and len(results) > 1 else 0.0,
        "calls": len(results),
        "skipped": st.windows_skipped,
        "playback_fps": fps,
        "cpu_ms": cpu / max(1, len(results)) * 1e3,  # per window, playback's share included
    }


def write_clip(path: Path, seconds: float, fps: int, size: tuple[int, int]) -> Path:
    import av

    w, h = size
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        rng = np.random.default_rng(0)
        for i in range(int(seconds * fps)):
            img = np.full((h, w, 3), (i * 3) % 255, np.uint8)
            img[:, (i * 7) % w :][:, :40] = rng.integers(0, 255, 3, dtype=np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        wave = (0.2 * np.sin(np.arange(int(seconds * 16000)) / 16000 * 2 * np.pi * 330)).astype(np.float32)
        for i in range(0, wave.size, 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, i : i + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return path


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    cpu = sub.add_parser("cpu", help="the demo model on this CPU")
    cpu.add_argument("--model", help="checkpoint folder (default: the demo model)")
    cpu.add_argument("--threads", type=int, default=None)
    cpu.add_argument(
        "--window", type=float, default=None, help="file/streaming window (default: model audio length)"
    )
    cpu.add_argument("--hop", type=float, default=None)
    cpu.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    cpu.add_argument(
        "--compile", default="none", choices=("none", "default", "max-autotune"),
        help="also measure the model and window stages with the whole forward compiled",
    )  # fmt: skip
    cpu.add_argument("--compile-only", action="store_true", help="stop after the compiled stages")
    gpu = sub.add_parser("gpu", help="IMD sizes and HF baselines on a GPU")
    gpu.add_argument(
        "--quick", action="store_true",
        help="the bounded run of bench/gpu_all.sh (~3 min on an H200): small/base/large + the 3 HF references "
        "eager at batches 1/32/64/128, then IMD-base compiled whole (reduce-overhead at batch 1, default at "
        "its best batch); any option given explicitly overrides it",
    )  # fmt: skip
    gpu.add_argument("--sizes", nargs="*", default=None, help="IMD sizes (default: small base large)")
    gpu.add_argument("--baselines", nargs="*", default=None, help="HF references (default: all three)")
    gpu.add_argument("--batches", type=int, nargs="*", default=None, help="default: 1 2 4 ... 128")
    gpu.add_argument(
        "--compile", dest="compile_best", default=None, choices=("none", "default", "reduce-overhead", "max-autotune"),
        help="compile the whole IMD forward in this mode at the eager best batch (default: none; --quick: default)",
    )  # fmt: skip
    gpu.add_argument(
        "--compile-b1", default=None, choices=("none", "default", "reduce-overhead", "max-autotune"),
        help="compile the whole IMD forward in this mode at batch 1 (default: none; --quick: reduce-overhead)",
    )  # fmt: skip
    gpu.add_argument(
        "--compile-sizes", nargs="*", default=None, help="IMD sizes to compile (default: --sizes)"
    )
    gpu.add_argument(
        "--compile-backend", default="inductor",
        help="torch.compile backend (inductor; eager/aot_eager capture without codegen: dry runs)",
    )  # fmt: skip
    gpu.add_argument("--peak-tflops", type=float, default=782.0)
    gpu.add_argument(
        "--budget", type=float, default=None,
        help="seconds for the whole run: a compile is not started with < 50 s left (--quick: 185)",
    )  # fmt: skip
    gpu.add_argument(
        "--seconds", type=float, default=None, help="seconds per measurement (default 2; --quick 0.5)"
    )
    gpu.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a dry run of this mode")
    gpu.add_argument("--on-cpu", action="store_true", help=argparse.SUPPRESS)  # old spelling of --device cpu
    gpu.add_argument(
        "--tiny",
        action="store_true",
        help="toy-sized models (IMD tiny, 2-layer HF references): a CPU smoke test",
    )
    for p in (cpu, gpu):
        p.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.mode == "gpu" and not args.quick:
        defaults = {"sizes": ["small", "base", "large"], "baselines": list(QUICK["baselines"]),
                    "batches": [1, 2, 4, 8, 16, 32, 64, 128], "seconds": 2.0, "compile_best": "none",
                    "compile_b1": "none"}  # fmt: skip
        for key, value in defaults.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        if args.compile_sizes is None:
            compiling = args.compile_b1 != "none" or args.compile_best != "none"
            args.compile_sizes = list(args.sizes) if compiling else []
    if args.mode == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    rows = run_cpu(args) if args.mode == "cpu" else run_gpu(args)
    info = machine()
    print(json.dumps(info))
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    print(" | ".join(keys))
    for r in rows:
        print(
            " | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys)
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
