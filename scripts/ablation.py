"""The IMD ablation on SynthAV, scaled to a 2-core CPU, from a shared visual pretraining.

Variants (``VARIANTS``: ``build_demo.VARIANTS`` plus ``oracle``): video only, naive
audio-visual fusion, random modality dropout (AVSlowFast's DropPathway, p = 0.5 on training
clips), IMD, IMD with intra-class cross-modality augmentation (p = 0.5), and the oracle
gate (naive fusion that keeps a clip's audio iff its true ``audio_kind`` is ``relevant``,
in training and at test: the most any gate can gain). Each at audio relevance P = 0.9,
0.5, 0.1 and several seeds. All variants share the frozen demo tagger (like the paper's
frozen AudioSet AST) and the ``tiny`` IMD architecture; only how audio is used differs.

Spurious soundtracks (issue 18): ``--spurious-correlation S`` renders the training sets with
``SynthConfig.spurious_correlation = S`` (every training clip counts as the ``train``
split: the sets are rendered with val/test fractions 0, which leaves every clip of S = 0
as it was), so an irrelevant soundtrack names its class's fixed sound with probability S;
the test sets never have it (S = 0: drawn independently of the class).
``--misleading-share M`` sets ``SynthConfig.misleading_share`` of every set. An ``OUT``
holds one (S, M) setting only.

Visual pretraining (the analogue of the paper's pretrained ViT backbone; on by default,
``--visual-pretrain-clips 0`` trains from scratch as the first study did): the ``tiny``
model is trained once video-only (variant ``video_only``: audio absent) on
``--visual-pretrain-clips`` SynthAV clips of ``--visual-pretrain-seed`` (50: no ablation
train or test set uses it), rendered in memory at the same render size and ambiguity. Its
state is saved once under ``OUT/visual_pretrain/`` (reused when present and made with the
same settings) and EVERY run's visual streams (``video.*``; not the relevance net,
fusion or head) start from it; everything else is the same across variants. The
pretraining data are the same 8 classes, a stronger prior than ImageNet/K400 weights.

CPU scale-down (said in docs/RESULTS.md): clips are rendered in memory at 64x64 (no MP4
round trip) and fed to the model at 32x32 with 4 frames; the defaults below are the scale
of the second study (``runs/ablation_v2``). Runs go seed by seed (every P and variant of
the first seed first), so a grid stopped early still covers every cell; an interrupted
grid resumes from ``OUT/results.jsonl``. ``--pretrain-only`` stops after the pretraining.

Example::

    .venv/bin/python scripts/ablation.py --tagger runs/demo/tagger --out runs/ablation_v2
    .venv/bin/python scripts/ablation.py --tagger runs/demo/tagger --out runs/ablation_v2 \\
        --report docs/results_ablation_v2.png
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_demo as B  # noqa: E402
from synth_stream import render_set  # noqa: E402

from imd_core.data.transforms import ClipPreprocessor  # noqa: E402
from imd_core.synth import TAGGER_LABELS, SynthConfig, sample_clip_spec  # noqa: E402

log = logging.getLogger("ablation")


@dataclass(frozen=True)
class AblationVariant(B.Variant):
    """``build_demo.Variant`` plus the oracle gate (not in ``build_demo``, which stays as it is)."""

    oracle_gate: bool = False  # keep the audio iff the clip's true audio_kind is "relevant"


VARIANTS: dict[str, B.Variant] = {
    **B.VARIANTS,
    # Naive fusion whose audio is dropped (the no-audio token) on every clip that is not
    # relevant by construction, in training and at test.
    "oracle": AblationVariant("oracle", imd=False, oracle_gate=True),
}


class OracleGate(torch.nn.Module):
    """Wraps an ``IMDModel``: ``audio_present &= the clip's true relevance``.

    The true relevance travels as an extra last column of the audio embedding (see
    :func:`with_relevance_column`), so ``build_demo.train_model`` and ``evaluate`` run
    unchanged (same batches, same random draws as every other variant); the column is
    removed before the model sees the embedding.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self):
        return self.model.config

    def forward(self, rgb, motion, *, audio_embedding, audio_present=None, **kwargs):
        relevant = audio_embedding[:, -1] > 0.5
        present = relevant if audio_present is None else audio_present.bool() & relevant
        return self.model(
            rgb, motion, audio_embedding=audio_embedding[:, :-1], audio_present=present, **kwargs
        )


class Recorder(torch.nn.Module):
    """Passes every call through and keeps the eval-mode predictions (``build_demo.evaluate``'s order)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.preds: list[torch.Tensor] = []

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        if not self.training:
            self.preds.append(out.logits.argmax(-1))
        return out


def shortcut_metrics(preds: torch.Tensor, labels: torch.Tensor, specs: list) -> dict[str, float]:
    """How far a model follows the spurious soundtrack shortcut on irrelevant test clips.

    ``shortcut_rate``: share of irrelevant clips predicted as a class whose spurious sound
    (``SPURIOUS_SOUNDS``) is the clip's sound (2 of 8 classes per sound: 0.25 for a model
    that ignores the sound); ``top1_irrelevant_match`` / ``_other``: top-1 on the irrelevant
    clips whose sound is / is not their own class's spurious sound (a shortcut wins on the
    first, about a quarter of them, and loses on the second).
    """
    from imd_core.synth.classes import ACTION_CLASSES, SPURIOUS_SOUNDS

    irr = [i for i, s in enumerate(specs) if s.audio_kind == "irrelevant"]
    if not irr:
        return {}
    follows = [SPURIOUS_SOUNDS[ACTION_CLASSES[int(preds[i])]] == specs[i].source for i in irr]
    match = [i for i in irr if SPURIOUS_SOUNDS[specs[i].label] == specs[i].source]
    other = [i for i in irr if i not in match]
    res = {"shortcut_rate": float(np.mean(follows))}
    for name, idx in (("match", match), ("other", other)):
        if idx:
            res[f"top1_irrelevant_{name}"] = float((preds[idx] == labels[idx]).float().mean())
    return res


def with_relevance_column(data):
    """A ``ClipSet`` whose embeddings carry 1.0 (relevant) or 0.0 as an extra last column."""
    relevant = torch.tensor([k == "relevant" for k in data.kinds], dtype=data.emb.dtype)
    return replace(data, emb=torch.cat([data.emb, relevant[:, None]], 1))


# The scale of the second study (runs/ablation_v2), measured on the shared 2-core sandbox with
# one thread (load ~4): a grid run ~27 s, the 45 runs ~25 min; the pretraining ~15 min once
# (30 epochs: its held-out top-1 plateaus near 0.2-0.26 from epoch ~11 at 32 px).
TRAIN_CLIPS = 480
EPOCHS = 6
PRETRAIN_CLIPS = 2000
PRETRAIN_EPOCHS = 30


KINDS = ("relevant", "irrelevant", "misleading", "silent")


def summarise(results_path: Path, plot_path: Path, title: str = "SynthAV ablation (CPU scale)") -> str:
    """Mean +- std over seeds per (P, variant) as markdown tables, and a plot of top-1 vs P.

    The first table has top-1, keep/drop accuracy and the audio-drop rate; the second the
    drop rate and top-1 per audio kind (means over seeds). A grid that stopped early is
    summarised as far as it got (the ``seeds`` column says how many).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["relevance"], r["variant"]), []).append(r)
    order = [v for v in VARIANTS if any(k[1] == v for k in groups)]
    rels = sorted({k[0] for k in groups}, reverse=True)

    def mean(g: list[dict], key: str) -> float:
        vals = [r[key] for r in g if key in r]
        return float(np.mean(vals)) if vals else float("nan")

    lines = [
        "| P | variant | seeds | top-1 (mean +- std) | keep/drop acc. | audio-drop rate |",
        "|---|---|---|---|---|---|",
    ]
    kind_lines = [
        "| P | variant | "
        + " | ".join(f"drop {k}" for k in KINDS)
        + " | "
        + " | ".join(f"top-1 {k}" for k in KINDS)
        + " |",
        "|---|---|" + "---|" * (2 * len(KINDS)),
    ]
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
                f"{mean(g, 'keep_drop_acc'):.3f} | {mean(g, 'drop_rate'):.3f} |"
            )
            kind_lines.append(
                f"| {rel} | {v} | "
                + " | ".join(f"{mean(g, f'drop_rate_{k}'):.2f}" for k in KINDS)
                + " | "
                + " | ".join(f"{mean(g, f'top1_{k}'):.2f}" for k in KINDS)
                + " |"
            )
            xs.append(rel)
            means.append(t.mean())
            stds.append(t.std())
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=v)
    ax.set_xlabel("audio relevance P")
    ax.set_ylabel("top-1 (held-out, unseen seed)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot_path, dpi=110)
    text = "\n".join(lines) + "\n\nPer audio kind (means over seeds):\n\n" + "\n".join(kind_lines)
    if any("shortcut_rate" in r for r in rows):
        cut = [
            "| P | variant | shortcut rate | top-1 irrelevant, sound = own class's | top-1 irrelevant, other sound |",
            "|---|---|---|---|---|",
        ]
        cut += [
            f"| {rel} | {v} | {mean(g, 'shortcut_rate'):.2f} | {mean(g, 'top1_irrelevant_match'):.2f} | "
            f"{mean(g, 'top1_irrelevant_other'):.2f} |"
            for v in order
            for rel in rels
            if (g := groups.get((rel, v)))
        ]
        text += (
            "\n\nThe spurious-sound shortcut on irrelevant test clips (means over seeds):\n\n"
            + "\n".join(cut)
        )
    return text


def visual_pretrain(
    args: argparse.Namespace, savld, pre: ClipPreprocessor, tagger, tests: dict[float, object]
) -> dict[str, torch.Tensor]:
    """The shared pretrained visual streams: ``video.*`` tensors of a video-only ``tiny`` model.

    Trained once on ``args.visual_pretrain_clips`` clips of ``args.visual_pretrain_seed``
    and saved (``save_model``) under ``OUT/visual_pretrain/``; a saved one is reused if its
    settings match, else this stops with a message. Its top-1 on each P's test set
    (before any fine-tuning) goes to ``OUT/visual_pretrain/eval.json``.
    """
    from safetensors.torch import load_file

    from imd_core.model.checkpoint import save_model

    folder = args.out / "visual_pretrain"
    settings = {
        "clips": args.visual_pretrain_clips,
        "epochs": args.visual_pretrain_epochs,
        "seed": args.visual_pretrain_seed,
        "relevance": 0.5,
        "ambiguity": args.ambiguity,
        "size": args.size,
        "image_size": args.image_size,
        "frames": args.frames,
        "batch_size": args.batch_size,
        "lr": args.lr,
    }
    meta_path = folder / "pretrain.json"
    if (folder / "model.safetensors").is_file() and meta_path.is_file():
        saved = json.loads(meta_path.read_text())["settings"]
        if saved != settings:
            raise SystemExit(
                f"{folder} was pretrained with {saved}, not {settings}: delete it or use another --out"
            )
        log.info("reusing the visual pretraining in %s", folder)
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        variant = B.VARIANTS["video_only"]
        data = render_set(
            SynthConfig(
                clips=args.visual_pretrain_clips,
                seed=args.visual_pretrain_seed,
                relevance=0.5,
                ambiguity=args.ambiguity,
                size=args.size,
            ),
            pre,
            2 * args.frames,
            tagger,
        )
        rendered = time.perf_counter() - t0
        torch.manual_seed(args.visual_pretrain_seed)
        model = B.make_model(args.tagger, savld, variant, args.image_size, 0, num_frames=args.frames)
        first = tests[args.relevance[0]]  # watched only (no choice is made from it)
        history = B.train_model(
            model,
            pre,
            data,
            variant,
            epochs=args.visual_pretrain_epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.visual_pretrain_seed,
            on_epoch=lambda _e: {"test_top1": B.evaluate(model, pre, first, variant)["top1"]},
        )
        evals = {str(rel): B.evaluate(model, pre, test, variant)["top1"] for rel, test in tests.items()}
        save_model(model, folder, savld=savld)
        meta_path.write_text(
            json.dumps(
                {
                    "settings": settings,
                    "render_seconds": round(rendered, 1),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "cpu_seconds": round(time.process_time() - c0, 1),
                    "history": history,
                    "top1_on_test_sets_before_finetuning": evals,
                },
                indent=2,
            )
            + "\n"
        )
        log.info(
            "visual pretraining: %d clips x %d epochs in %.0f s; top-1 on the test sets %s",
            args.visual_pretrain_clips,
            args.visual_pretrain_epochs,
            time.perf_counter() - t0,
            evals,
        )
    state = load_file(str(folder / "model.safetensors"))
    return {k[len("video.") :]: v for k, v in state.items() if k.startswith("video.")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tagger", type=Path, required=True, help="the demo tagger folder (train_tagger.py)")
    p.add_argument("--out", type=Path, default=Path("runs/ablation_v2"))
    p.add_argument("--relevance", type=float, nargs="+", default=[0.9, 0.5, 0.1])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-clips", type=int, default=TRAIN_CLIPS)
    p.add_argument("--test-clips", type=int, default=160)
    p.add_argument("--ambiguity", type=float, default=0.6)
    p.add_argument(
        "--spurious-correlation",
        type=float,
        default=0.0,
        help="SynthConfig.spurious_correlation of the training sets (test sets: always 0)",
    )
    p.add_argument(
        "--misleading-share",
        type=float,
        default=0.25,
        help="SynthConfig.misleading_share of the training and test sets",
    )
    p.add_argument("--size", type=int, default=64, help="render size (pixels)")
    p.add_argument("--image-size", type=int, default=32, help="model input size (pixels)")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--visual-pretrain-clips",
        type=int,
        default=PRETRAIN_CLIPS,
        help="clips of the shared video-only pretraining (0: every run trains its video streams from scratch)",
    )
    p.add_argument("--visual-pretrain-epochs", type=int, default=PRETRAIN_EPOCHS)
    p.add_argument(
        "--visual-pretrain-seed",
        type=int,
        default=50,
        help="SynthAV seed of the pretraining clips (no train/test set of the grid may use it)",
    )
    p.add_argument("--pretrain-only", action="store_true", help="stop after the visual pretraining")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine more threads spin and slow down)",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        help="only summarise OUT/results.jsonl: print markdown tables, write this plot (PNG)",
    )
    args = p.parse_args(argv)
    if args.report is not None:
        print(summarise(args.out / "results.jsonl", args.report))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    # Data depends on P only; training and test sets use different seeds (test unseen).
    seeds = {rel: (100 + round(rel * 10), 900 + round(rel * 10)) for rel in args.relevance}
    if args.visual_pretrain_clips > 0 and any(args.visual_pretrain_seed in s for s in seeds.values()):
        raise SystemExit(
            f"--visual-pretrain-seed {args.visual_pretrain_seed} is a train/test seed of the grid "
            f"({seeds}); choose another"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    done = set()
    setting = {"spurious_correlation": args.spurious_correlation, "misleading_share": args.misleading_share}
    if results_path.is_file():
        for line in results_path.read_text().splitlines():
            r = json.loads(line)
            theirs = {
                "spurious_correlation": r.get("spurious_correlation", 0.0),
                "misleading_share": r.get("misleading_share", 0.25),
            }
            if theirs != setting:
                raise SystemExit(f"{results_path} has runs with {theirs}, not {setting}: use another --out")
            done.add((r["relevance"], r["variant"], r["seed"]))
    savld = B.build_savld(list(TAGGER_LABELS))
    overrides = {"num_frames": args.frames}
    probe = B.make_model(args.tagger, savld, B.VARIANTS["imd"], args.image_size, 0, **overrides)
    pre = ClipPreprocessor.from_model_config(probe.config)
    t0 = time.perf_counter()
    base = {
        rel: dict(
            relevance=rel, ambiguity=args.ambiguity, size=args.size, misleading_share=args.misleading_share
        )
        for rel in args.relevance
    }
    test_cfgs = {
        rel: SynthConfig(clips=args.test_clips, seed=seeds[rel][1], **base[rel]) for rel in args.relevance
    }
    tests = {rel: render_set(cfg, pre, args.frames, probe.ast) for rel, cfg in test_cfgs.items()}
    test_specs = {rel: [sample_clip_spec(cfg, i) for i in range(cfg.clips)] for rel, cfg in test_cfgs.items()}
    log.info("rendered the test sets (%.0f s)", time.perf_counter() - t0)
    video_init = None
    if args.visual_pretrain_clips > 0:
        video_init = visual_pretrain(args, savld, pre, probe.ast, tests)
    if args.pretrain_only:
        return 0
    # Seed-major order: a grid stopped early still has every (P, variant) cell for its first seeds.
    todo = [
        (s, rel, n)
        for s in args.seeds
        for rel in args.relevance
        for n in args.variants
        if (rel, n, s) not in done
    ]
    trains = {}
    for rel in sorted({t[1] for t in todo}, key=args.relevance.index):
        # val/test fractions 0: every clip is a "train" clip (only the split changes; at S = 0
        # the set is the one earlier versions rendered), so the spurious sounds reach all of them.
        trains[rel] = render_set(
            SynthConfig(
                clips=args.train_clips,
                seed=seeds[rel][0],
                val_fraction=0.0,
                test_fraction=0.0,
                spurious_correlation=args.spurious_correlation,
                **base[rel],
            ),
            pre,
            2 * args.frames,
            probe.ast,
        )
        log.info(
            "P=%.1f: rendered %d training clips (%.0f s)", rel, args.train_clips, time.perf_counter() - t0
        )
    steps = args.epochs * -(-args.train_clips // args.batch_size)
    for seed, rel, name in todo:
        variant = VARIANTS[name]
        torch.manual_seed(seed)
        model = B.make_model(args.tagger, savld, variant, args.image_size, steps // 3, **overrides)
        if video_init is not None:  # only the visual streams; relevance net, fusion, head start fresh
            model.video.load_state_dict(video_init)
        train, test = trains[rel], tests[rel]
        if getattr(variant, "oracle_gate", False):
            model, train, test = OracleGate(model), with_relevance_column(train), with_relevance_column(test)
        start, cpu = time.perf_counter(), time.process_time()
        B.train_model(
            model, pre, train, variant, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed
        )
        recorder = Recorder(model)
        metrics = B.evaluate(recorder, pre, test, variant)
        metrics |= shortcut_metrics(torch.cat(recorder.preds), test.labels, test_specs[rel])
        row = {
            "relevance": rel,
            "variant": name,
            "seed": seed,
            **metrics,
            **setting,
            "visual_pretrain": video_init is not None,
            "train_seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1),
        }
        log.info("%s", row)
        with open(results_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    (args.out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2))
    log.info("grid done (%.0f s)", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
