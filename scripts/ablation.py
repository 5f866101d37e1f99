"""The IMD ablation on SynthAV, scaled to a 2-core CPU.

Variants (``build_demo.VARIANTS``): video only, naive audio-visual fusion, random
modality dropout (AVSlowFast's DropPathway, p = 0.5 on training clips), IMD, and IMD with
intra-class cross-modality augmentation (p = 0.5). Each at audio relevance P = 0.9, 0.5,
0.1 and several seeds. All variants share the frozen demo tagger (like the paper's frozen
AudioSet AST) and the ``tiny`` IMD architecture; only how audio is used differs.

CPU scale-down (said in docs/RESULTS.md): clips are rendered in memory at 64x64 (no MP4
round trip) and fed to the model at 32x32, 160 training clips per P, 4 frames per clip,
5 epochs.

Example::

    .venv/bin/python scripts/ablation.py --tagger runs/demo/tagger --out runs/ablation
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_demo as B  # noqa: E402
from synth_stream import render_set  # noqa: E402

from imd_core.data.transforms import ClipPreprocessor  # noqa: E402
from imd_core.synth import TAGGER_LABELS, SynthConfig  # noqa: E402

log = logging.getLogger("ablation")


def summarise(results_path: Path, plot_path: Path) -> str:
    """Mean +- std over seeds per (P, variant) as a markdown table, and a plot of top-1 vs P."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["relevance"], r["variant"]), []).append(r)
    order = [v for v in B.VARIANTS if any(k[1] == v for k in groups)]
    rels = sorted({k[0] for k in groups}, reverse=True)
    lines = ["| P | variant | seeds | top-1 (mean +- std) | keep/drop acc. | audio-drop rate | drop rate on relevant |",
             "|---|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in order:
        means, stds, xs = [], [], []
        for rel in rels:
            g = groups.get((rel, v))
            if not g:
                continue
            t = np.array([r["top1"] for r in g])
            lines.append(
                f"| {rel} | {v} | {len(g)} | {t.mean():.3f} +- {t.std():.3f} | "
                f"{np.mean([r['keep_drop_acc'] for r in g]):.3f} | {np.mean([r['drop_rate'] for r in g]):.3f} | "
                f"{np.mean([r.get('drop_rate_relevant', float('nan')) for r in g]):.3f} |")
            xs.append(rel)
            means.append(t.mean())
            stds.append(t.std())
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=v)
    ax.set_xlabel("audio relevance P")
    ax.set_ylabel("top-1 (held-out, unseen seed)")
    ax.set_title("SynthAV ablation (CPU scale)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot_path, dpi=110)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tagger", type=Path, required=True, help="the demo tagger folder (train_tagger.py)")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--relevance", type=float, nargs="+", default=[0.9, 0.5, 0.1])
    p.add_argument("--variants", nargs="+", default=list(B.VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-clips", type=int, default=160)
    p.add_argument("--test-clips", type=int, default=160)
    p.add_argument("--ambiguity", type=float, default=0.6)
    p.add_argument("--size", type=int, default=64, help="render size (pixels)")
    p.add_argument("--image-size", type=int, default=32, help="model input size (pixels)")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared 2-core machine more threads spin and slow down)")
    p.add_argument("--report", type=Path, default=None,
                   help="only summarise OUT/results.jsonl: print a markdown table, write this plot (PNG)")
    args = p.parse_args(argv)
    if args.report is not None:
        print(summarise(args.out / "results.jsonl", args.report))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    done = set()
    if results_path.is_file():
        for line in results_path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["relevance"], r["variant"], r["seed"]))
    savld = B.build_savld(list(TAGGER_LABELS))
    overrides = {"num_frames": args.frames}
    probe = B.make_model(args.tagger, savld, B.VARIANTS["imd"], args.image_size, 0, **overrides)
    pre = ClipPreprocessor.from_model_config(probe.config)
    t0 = time.perf_counter()
    for rel in args.relevance:
        # Data depends on P only; training/test sets use different seeds (test unseen).
        base = dict(relevance=rel, ambiguity=args.ambiguity, size=args.size)
        train = render_set(SynthConfig(clips=args.train_clips, seed=100 + int(rel * 10), **base), pre,
                           2 * args.frames, probe.ast)
        test = render_set(SynthConfig(clips=args.test_clips, seed=900 + int(rel * 10), **base), pre,
                          args.frames, probe.ast)
        log.info("P=%.1f: rendered %d + %d clips (%.0f s)", rel, len(train.labels), len(test.labels),
                 time.perf_counter() - t0)
        steps = args.epochs * -(-len(train.labels) // args.batch_size)
        for seed in args.seeds:
            for name in args.variants:
                if (rel, name, seed) in done:
                    continue
                variant = B.VARIANTS[name]
                torch.manual_seed(seed)
                model = B.make_model(args.tagger, savld, variant, args.image_size, steps // 3, **overrides)
                start = time.perf_counter()
                B.train_model(model, pre, train, variant, epochs=args.epochs, batch_size=args.batch_size,
                              lr=args.lr, seed=seed)
                metrics = B.evaluate(model, pre, test, variant)
                row = {"relevance": rel, "variant": name, "seed": seed, **metrics,
                       "train_seconds": round(time.perf_counter() - start, 1)}
                log.info("%s", row)
                with open(results_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    (args.out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
