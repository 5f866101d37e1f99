"""Clip decoding speed: clips per second per core for training-style sampling.

Writes N 10 s 640x360 25 fps H.264 (x264 defaults) + AAC 44.1 kHz stereo clips of a
textured moving scene (~0.8 Mbit/s, like ordinary footage), then times, per clip:

- ``sequential``: a plain decode of every video frame (PyAV, one thread), the reference;
- ``seek-per-frame``: the naive way, one seek + decode per sampled frame (+ audio);
- ``decode_clip``: :func:`imd_core.media.decode.decode_clip`, 8 frames at 224 short side
  centre-cropped to 224x224, plus 10 s of 16 kHz mono audio;
- ``no-deblock``: the same with ``deblock=False`` (an approximation: the H.264 loop
  filter skipped); its pixel difference from the exact frames is printed too;
- ``preprocess``: the same plus :class:`ClipPreprocessor` (motion, normalisation, fbank);
- ``loader``: a ``make_loader`` DataLoader with worker processes over the clips.

CPU time (``time.process_time``) per clip is the per-core cost, robust to other load on
the machine; wall time is printed too. Usage::

    .venv/bin/python bench/bench_decode.py [--clips 8] [--repeats 3] [--workers 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from imd_core.media.decode import decode_clip, sample_times  # noqa: E402

SECONDS, FPS, WIDTH, HEIGHT, FRAMES, SIZE = 10.0, 25, 640, 360, 8, 224


def make_clips(folder: Path, n: int, crf: int | None = None) -> list[Path]:
    from tests.media_factory import write_clip

    paths = []
    for i in range(n):
        p = folder / f"clip{i}.mp4"
        if not p.exists():
            write_clip(
                p,
                SECONDS,
                fps=FPS,
                width=WIDTH,
                height=HEIGHT,
                pattern="texture",
                seed=i,
                audio_hz=220.0 * (i + 1),
                crf=crf,
            )
        paths.append(p)
    return paths


def sequential(path: Path) -> None:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        v.codec_context.thread_count = 1
        for _ in c.decode(v):
            pass


def seek_per_frame(path: Path) -> None:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        v.codec_context.thread_count = 1
        for t in sample_times(0.0, SECONDS, num_frames=FRAMES):
            c.seek(int(t / v.time_base), stream=v, backward=True)
            for frame in c.decode(v):
                if frame.time >= t - 1 / FPS:
                    frame.reformat(width=398, height=SIZE, format="rgb24", threads=1).to_ndarray()
                    break
    decode_clip(path, video=False)  # the audio, as decode_clip would


def open_only(path: Path) -> None:
    """The open ``decode_clip`` does (lean: FFmpeg's stream probe decodes no video frame)."""
    from imd_core.media.probe import Watchdog, open_media

    open_media(str(path), Watchdog(str(path), 30.0), lean=True).close()


def video_only(path: Path) -> None:
    decode_clip(path, num_frames=FRAMES, size=SIZE, audio=False)


def audio_only(path: Path) -> None:
    decode_clip(path, video=False)


def ours(path: Path, deblock: bool = True) -> np.ndarray:
    clip = decode_clip(path, num_frames=FRAMES, size=SIZE, deblock=deblock)
    w = clip.frames.shape[2]
    return clip.frames[:, :, (w - SIZE) // 2 : (w - SIZE) // 2 + SIZE]


def no_deblock_error(paths: list[Path]) -> dict:
    """How far ``deblock=False`` frames are from the exact ones (grey levels, 0-255)."""
    diffs = [np.abs(ours(p).astype(np.int16) - ours(p, deblock=False)) for p in paths]
    per_frame = np.concatenate([d.mean(axis=(1, 2, 3)) for d in diffs])
    return {
        "mean_abs": round(float(np.mean(per_frame)), 3),
        "worst_frame_mean_abs": round(float(per_frame.max()), 3),
        "max_abs": int(max(d.max() for d in diffs)),
    }


def preprocess(path: Path, pre) -> dict:
    clip = decode_clip(path, num_frames=FRAMES, size=SIZE)
    return pre(clip.frames, clip.audio, train=False)


def time_stages(stages: dict, paths: list[Path], repeats: int) -> dict:
    """Median CPU and wall ms per clip of each stage, run round-robin so drift hits all alike."""
    cpu: dict[str, list[float]] = {k: [] for k in stages}
    wall: dict[str, list[float]] = {k: [] for k in stages}
    for fn in stages.values():
        fn(paths[0])  # warm-up (imports, caches)
    for _ in range(repeats):
        for p in paths:
            for name, fn in stages.items():
                c0, w0 = time.process_time(), time.perf_counter()
                fn(p)
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
    out = {}
    for name in stages:
        cpu_ms, wall_ms = 1000 * statistics.median(cpu[name]), 1000 * statistics.median(wall[name])
        out[name] = {
            "cpu_ms": round(cpu_ms, 1),
            "wall_ms": round(wall_ms, 1),
            "clips_per_s_per_core": round(1000 / cpu_ms, 2),
        }
    return out


def loader_rate(paths: list[Path], workers: int, items: int, pre) -> dict:
    """Clips/s through ``make_loader`` with worker processes; CPU of the workers from rusage."""
    import gc
    import resource

    from imd_core.data.dataset import ClipDataset, make_loader
    from imd_core.data.manifest import ClipEntry, DatasetIndex

    entries = tuple(ClipEntry(str(paths[i % len(paths)]), "x", 0, split="train") for i in range(items))
    ds = ClipDataset(DatasetIndex("bench", ("x",), entries, "csv"), pre, train=True)
    loader = make_loader(ds, batch_size=4, num_workers=workers, pin_memory=False, drop_last=False)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    n = sum(b["batch_size"] for b in loader)  # includes starting the workers
    wall = time.perf_counter() - t0
    del loader
    gc.collect()  # persistent workers exit and are reaped: their CPU time lands in RUSAGE_CHILDREN
    time.sleep(0.5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = {"workers": workers, "clips": n, "wall_s": round(wall, 2), "clips_per_s": round(n / wall, 2)}
    if cpu > 0:
        out["worker_cpu_ms_per_clip"] = round(1000 * cpu / n, 1)
        out["clips_per_s_per_core"] = round(n / cpu, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--loader-clips", type=int, default=48, help="items the loader stage decodes")
    ap.add_argument("--dir", help="folder for the clips (kept); default: a temporary folder")
    ap.add_argument(
        "--skip", default="", help="comma list of stages to skip (seek-per-frame,preprocess,loader)"
    )
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--breakdown", action="store_true", help="also time open / video-only / audio-only")
    ap.add_argument(
        "--crf",
        type=int,
        default=None,
        help="x264 CRF of the clips (default: x264's 23, ~0.87 Mbit/s); 28 gives ~0.5 Mbit/s clips "
        "whose sequential decode costs what issue #4 calibrates its goal on (~110 ms here); "
        "use a separate --dir per CRF",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core per decoding process, as in DataLoader workers
    skip = set(filter(None, args.skip.split(",")))

    tmp = None if args.dir else tempfile.TemporaryDirectory()
    folder = Path(args.dir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    paths = make_clips(folder, args.clips, args.crf)
    size_mbit = statistics.mean(p.stat().st_size for p in paths) * 8 / SECONDS / 1e6

    from imd_core.data.transforms import ClipPreprocessor

    pre = ClipPreprocessor(num_frames=FRAMES, image_size=SIZE, audio_seconds=10.24, train_scale=(1.0, 1.0))
    results = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "clip": f"{SECONDS:g} s {WIDTH}x{HEIGHT} {FPS} fps H.264+AAC, {size_mbit:.2f} Mbit/s, "
        f"crf {args.crf if args.crf is not None else 'default (23)'}",
    }
    stages = {"sequential": sequential}
    if "seek-per-frame" not in skip:
        stages["seek-per-frame"] = seek_per_frame
    if args.breakdown:
        stages.update({"open": open_only, "video part": video_only, "audio part": audio_only})
    stages["decode_clip"] = ours
    if "no-deblock" not in skip:
        stages["no-deblock"] = lambda p: ours(p, deblock=False)
    if "preprocess" not in skip:
        stages["preprocess"] = lambda p: preprocess(p, pre)
    results.update(time_stages(stages, paths, args.repeats))
    if "no-deblock" not in skip:
        results["no-deblock error"] = no_deblock_error(paths)
    if "loader" not in skip:
        results["loader"] = loader_rate(paths, args.workers, args.loader_clips, pre)

    print(f"{results['machine']}, {results['date']}; {results['clip']}")
    print(f"load average at start {results['load_average']}, at end {[round(x, 2) for x in os.getloadavg()]}")
    print(f"{'stage':<16} {'CPU ms/clip':>12} {'wall ms/clip':>13} {'clips/s/core':>13}")
    for k in (
        "sequential",
        "seek-per-frame",
        "open",
        "video part",
        "audio part",
        "decode_clip",
        "no-deblock",
        "preprocess",
    ):
        if k in results:
            r = results[k]
            print(f"{k:<16} {r['cpu_ms']:>12.1f} {r['wall_ms']:>13.1f} {r['clips_per_s_per_core']:>13.2f}")
    if "no-deblock error" in results:
        e = results["no-deblock error"]
        print(f"no-deblock vs exact frames: mean |diff| {e['mean_abs']} grey levels, worst frame "
              f"{e['worst_frame_mean_abs']}, worst pixel {e['max_abs']}")  # fmt: skip
    if "loader" in results:
        r = results["loader"]
        print(f"loader (train transforms + fbank): {r['workers']} workers, {r['clips']} clips in {r['wall_s']} s "
              f"= {r['clips_per_s']} clips/s; worker CPU {r.get('worker_cpu_ms_per_clip')} ms/clip "
              f"= {r.get('clips_per_s_per_core')} clips/s per core")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
