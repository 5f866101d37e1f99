"""kinetics400 on this CPU: `imd predict` speed, live window cost and time to first result,
for several frame counts and crop sizes, and (with --real-set) their accuracy.

    .venv/bin/python bench/bench_kinetics400.py [--threads 2] [--real-set .weights/real_set]

Without ``--clip`` it writes a 10 s 640x360 30 fps textured H.264/AAC clip with
``tests/media_factory.py`` (the issue's reference input). Each setting is the shipped model
with ``num_frames`` / ``image_size`` replaced; the weights are the same.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SETTINGS = [(32, 224), (16, 224), (16, 176), (16, 160), (8, 224)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", help="a clip to time (default: a generated 10 s 640x360 30 fps clip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--real-set", help="folder with manifest.csv (scripts/build_real_set.py) for accuracy")
    ap.add_argument("--settings", nargs="*", help="FRAMESxCROP, e.g. 16x224 (default: a sweep)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from imd_core.inference.inputs import WindowInput
    from imd_core.inference.predictor import Predictor
    from imd_core.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    settings = [tuple(int(x) for x in s.split("x")) for s in args.settings] if args.settings else SETTINGS
    t0 = time.perf_counter()
    base = load_model("kinetics400")
    load_s = time.perf_counter() - t0
    tmp = tempfile.TemporaryDirectory()
    clip = args.clip
    if clip is None:
        from tests.media_factory import write_clip

        clip = str(write_clip(Path(tmp.name) / "ref.mp4", seconds=10.0, fps=30.0, width=640, height=360,
                              pattern="texture", audio_hz=440.0))  # fmt: skip
    info = {
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": args.threads,
        "torch": torch.__version__,
        "model_load_s": round(load_s, 2),
    }
    print(json.dumps(info))
    rows = []
    for frames, crop in settings:
        base.config = base.config.replace(num_frames=frames, image_size=crop)
        pred = Predictor(base, device="cpu", threads=args.threads, batch_size=1, decode_workers=0)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = pred.predict_path(clip)
            times.append(time.perf_counter() - t)
        # one live window: the app's window (the audio length), frames as the player keeps them
        window = base.config.audio_seconds
        live = WindowInput(
            frames=np.random.default_rng(0).integers(0, 255, (int(window * 12.5), crop + crop // 7, crop + crop // 7, 3),
                                                     dtype=np.uint8),  # fmt: skip
            audio=np.zeros(int(window * 16000), np.float32), path="live", start=0.0, end=window,
        )  # fmt: skip
        pred.predict_windows([live])
        t = time.perf_counter()
        for _ in range(args.repeats):
            pred.predict_windows([live])
        live_s = (time.perf_counter() - t) / args.repeats
        row = {
            "frames": frames,
            "crop": crop,
            "predict_10s_clip_s": round(statistics.median(times), 2),
            "realtime_factor": round(10.0 / statistics.median(times), 2),
            "live_window_s": round(live_s, 2),
            "first_result_s": round(load_s + times[0], 2),
            "label_on_ref_clip": res[0].label,
        }
        if args.real_set:
            row.update(accuracy(pred, Path(args.real_set)))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return 0


def accuracy(pred, folder: Path) -> dict:
    """Top-1/top-5 hits on the real set's clips that have expected labels."""
    with open(folder / "manifest.csv", encoding="utf-8", newline="") as fh:
        items = [r for r in csv.DictReader(fh) if r.get("expected_labels")]
    hit1 = hit5 = 0
    for r in items:
        res = pred.predict_path(folder / r["path"])[0]
        expected = set(r["expected_labels"].split(";"))
        hit1 += res.top[0].label in expected
        hit5 += bool(expected & {t.label for t in res.top[:5]})
    n = max(1, len(items))
    return {"clips": len(items), "top1": round(hit1 / n, 3), "top5": round(hit5 / n, 3)}


if __name__ == "__main__":
    raise SystemExit(main())
