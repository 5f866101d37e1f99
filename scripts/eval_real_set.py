"""kinetics400 on the real audio-visual set (docs/REAL_SET.md), clip by clip.

For every clip of ``manifest.csv`` and every audio policy -- ``never`` (video only),
``always`` (fuse whatever is heard: no dropout) and ``rule`` (IMD: the paper's relevance
rule, irrelevant audio dropped) -- records the top-5, the audio decision, the heard tags
and the confidence, and prints the summary table of docs/RESULTS.md.

    .venv/bin/python scripts/build_real_set.py --download      # once: the clips
    .venv/bin/python scripts/eval_real_set.py --out docs/results_real_set.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

POLICIES = ("never", "always", "rule")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", default=".weights/real_set", help="folder with manifest.csv")
    ap.add_argument("--out", default="docs/results_real_set.jsonl", help="raw rows (JSON lines)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set-config", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="PretrainedConfig overrides, e.g. num_frames=32")  # fmt: skip
    args = ap.parse_args()

    import torch

    from imd_core.inference.predictor import Predictor
    from imd_core.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    folder = Path(args.set)
    with open(folder / "manifest.csv", encoding="utf-8", newline="") as fh:
        clips = list(csv.DictReader(fh))
    model = load_model("kinetics400")
    overrides = dict(kv.split("=", 1) for kv in args.set_config)
    base = model.config.with_overrides(overrides) if overrides else model.config
    rows = []
    for policy in POLICIES:
        model.config = base.replace(audio_policy=policy)
        pred = Predictor(model, device="cpu", threads=args.threads, batch_size=1, decode_workers=0)
        for clip in clips:
            r = pred.predict_path(folder / clip["path"])[0]
            expected = [x for x in clip["expected_labels"].split(";") if x]
            rows.append(
                {
                    "clip": clip["path"],
                    "policy": policy,
                    "audio_kind": clip["audio_kind"],
                    "audio_relevant": clip["audio_relevant"],
                    "expected": expected,
                    "top5": [(t.label, round(t.score, 4)) for t in r.top],
                    "top1_hit": bool(expected) and r.top[0].label in expected,
                    "top5_hit": bool(expected) and bool(set(expected) & {t.label for t in r.top}),
                    "confident": r.confident,
                    "audio_present": r.audio.present,
                    "audio_kept": r.audio.present and not r.audio.dropped,
                    "iou": r.audio.savld_iou,
                    "heard": list(r.audio.heard or ()),
                    "tags": [(t.label, round(t.score, 4)) for t in r.audio.tags],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print_summary(rows)
    return 0


def print_summary(rows: list[dict]) -> None:
    print("\n| policy | top-1 (labelled clips) | top-5 | keep/drop right (clips with audio, truth known) |")
    print("|---|---|---|---|")
    for policy in POLICIES:
        mine = [r for r in rows if r["policy"] == policy]
        labelled = [r for r in mine if r["expected"]]
        judged = [r for r in mine if r["audio_present"] and r["audio_relevant"] in ("true", "false")]
        right = sum(r["audio_kept"] == (r["audio_relevant"] == "true") for r in judged)
        t1 = sum(r["top1_hit"] for r in labelled)
        t5 = sum(r["top5_hit"] for r in labelled)
        print(f"| {policy} | {t1}/{len(labelled)} | {t5}/{len(labelled)} | {right}/{len(judged)} |")


if __name__ == "__main__":
    raise SystemExit(main())
