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

Files (``imd predict``'s loop, decode-ahead threads on and off)::

    .venv/bin/python -m imd_core synth /tmp/s16 --clips 16
    .venv/bin/python bench/bench_inference.py files /tmp/s16/clips --threads 1 --workers 0 2

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
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# As the imd entry point does: OpenMP threads sleep rather than spin (must precede torch).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_gpu import QUICK, count_flops, machine, run_gpu, time_calls  # noqa: E402

from imd_core.inference.inputs import WindowInput  # noqa: E402


# ---------------------------------------------------------------------------- models
def tiny_random_model_dir(folder: Path) -> Path:
    from imd_core.model.checkpoint import save_model
    from imd_core.model.config import ModelConfig
    from imd_core.model.imd_model import IMDModel

    cfg = ModelConfig.for_size("tiny", labels=[f"class {i}" for i in range(8)])
    save_model(IMDModel(cfg, load_pretrained=False), folder)
    return folder


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


def run_files(args) -> list[dict]:
    """``Predictor.predict_paths`` over a folder: files/s with ``decode_workers`` 0 and N, alternating.

    The same predictor (and thread count) for every run; one warm-up pass first, then
    ``--rounds`` rounds of each worker count in turn, so load changes hit all of them.
    """
    from imd_core.inference.inputs import expand_inputs
    from imd_core.inference.predictor import Predictor
    from imd_core.resources import demo_model_dir

    files, errors = expand_inputs([args.folder])
    if errors or not files:
        raise SystemExit(f"no media files in {args.folder}")
    pred = Predictor(
        args.model or demo_model_dir(), device="cpu", threads=args.threads, batch_size=args.batch_size
    )
    list(pred.predict_paths(files[:2], args.window, decode_workers=0))  # warm-up
    runs: dict[int, list[tuple[float, float, int]]] = {w: [] for w in args.workers}
    reference = None
    for _ in range(args.rounds):
        for w in args.workers:
            t0, c0 = time.perf_counter(), time.process_time()
            outcomes = list(pred.predict_paths(files, args.window, decode_workers=w))
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            labels = [(o.path, o.error, [r.top[0].label for r in o.results]) for o in outcomes]
            reference = reference or labels
            if labels != reference:
                raise SystemExit(
                    f"decode_workers={w} gave other results than decode_workers={args.workers[0]}"
                )
            runs[w].append((dt, dc, sum(len(o.results) for o in outcomes)))
    rows = []
    for w, rs in runs.items():
        walls = sorted(r[0] for r in rs)
        rows.append({"stage": f"predict_paths {len(files)} files, decode_workers={w}",
                     "files_per_s": len(files) / statistics.median(walls),
                     "files_per_s_runs": [round(len(files) / t, 2) for t in walls[::-1]],
                     "windows_per_s": rs[0][2] / statistics.median(walls),
                     "cpu_s_per_run": statistics.median(r[1] for r in rs),
                     "wall_s_per_run": statistics.median(walls)})  # fmt: skip
    return rows


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
    fl = sub.add_parser("files", help="imd predict's file loop: decode-ahead threads on and off")
    fl.add_argument("folder", help="a folder of clips (e.g. from `imd synth OUT --clips 16`)")
    fl.add_argument("--model", help="checkpoint folder (default: the demo model)")
    fl.add_argument("--threads", type=int, default=None)
    fl.add_argument("--batch-size", type=int, default=8)
    fl.add_argument("--window", type=float, default=None, help="window seconds (default: whole clip)")
    fl.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="decode_workers values to compare")
    fl.add_argument("--rounds", type=int, default=5)
    for p in (cpu, gpu, fl):
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
    runner = {"cpu": run_cpu, "gpu": run_gpu, "files": run_files}[args.mode]
    rows = runner(args)
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
