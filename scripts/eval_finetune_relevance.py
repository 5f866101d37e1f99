"""The learned relevance gate against the SAVLD rule, after fine-tuning on real features.

Fine-tunes kinetics400 through ``imd train`` exactly as tests/core/pretrained/test_finetune_real.py
does (7 classes, train window 0-3.84 s, validation window 3.86-7.7 s of every clip of the
real set), then scores each validation window's keep/drop against the audio's true relevance
(the manifest's ``audio_relevant``; silent and missing tracks are not relevant) and the
fine-tuned model's top-1 with its learned gate, every track kept and every track dropped.

    .venv/bin/python scripts/eval_finetune_relevance.py --out docs/results_finetune_relevance.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from imd_core.cli.main import main as imd
from imd_core.inference.predictor import Predictor
from imd_core.pretrained.feature_cache import segment_input

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {  # as test_finetune_real.py: clip name prefix -> class
    "pianist": "playing piano",
    "dancer": "dancing ballet",
    "crying": "crying",
    "laughing": "laughing",
    "sports2d": "parkour",
    "pedestrians": "walking",
    "cup": "cup on a table",
}
TRAIN_WINDOW, VAL_WINDOW = (0.0, 3.84), (3.86, 7.7)


def write_manifest(real_set: Path, out: Path) -> list[dict[str, str]]:
    """The test's train/val manifest at ``out``; returns the real set's rows of the 7 recordings."""
    with open(real_set / "manifest.csv", encoding="utf-8") as f:
        clips = [c for c in csv.DictReader(f) if c["path"].split("_")[0] in CLASSES]
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "start", "end", "split"])
        w.writeheader()
        for c in clips:
            label, path = CLASSES[c["path"].split("_")[0]], str(real_set / c["path"])
            for split, (s, e) in (("train", TRAIN_WINDOW), ("val", VAL_WINDOW)):
                w.writerow({"path": path, "label": label, "start": s, "end": e, "split": split})
    return clips


def inputs(predictor: Predictor, path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The validation window as ``imd predict --window`` and training decode it: rgb, fbank, present."""
    x = predictor.preprocess(segment_input(predictor, (path, *VAL_WINDOW)))
    return x["rgb"].unsqueeze(0), x["fbank"].unsqueeze(0), torch.tensor([bool(x["audio_present"])])


@torch.inference_mode()
def gated_probs(
    model: torch.nn.Module, rgb: torch.Tensor, fbank: torch.Tensor, gate: torch.Tensor
) -> torch.Tensor:
    """The fine-tuned head with its gate forced to ``gate`` (the teacher-forcing argument that
    training uses): the rule's decisions as a gate; all ones is ``audio_policy="always"``."""
    feats = model.video.forward_features(rgb.permute(0, 2, 1, 3, 4).float())
    audio, _ = model.audio_features(fbank)
    return model.head(feats, audio, torch.ones_like(gate, dtype=torch.bool), gate=gate.float())[0].softmax(-1)


def evaluate(run: Path, clips: list[dict[str, str]], real_set: Path) -> list[dict]:
    """One row per validation window: truth, the four keep/drop policies, top-1 under each gate."""
    ft = Predictor(run / "best", device="cpu", batch_size=1, decode_workers=0)
    zs = Predictor("kinetics400", device="cpu", batch_size=1, decode_workers=0)
    threshold = zs.relevance_threshold  # the shipped rule's (the fine-tuned folder's 0.5 is its gate's)
    labels, tags = ft.labels, ft.model.audio_labels
    rows = []
    for c in clips:
        path, label = str(real_set / c["path"]), CLASSES[c["path"].split("_")[0]]
        true_idx = torch.tensor([labels.index(label)])
        rgb, fbank, present = inputs(ft, path)
        p = ft.model.predict(rgb, None, fbank, present)  # the product's forward: learned gate
        rule_iou = float(p.savld_iou[0])  # the product's IoU: heard tags vs SAVLD(predicted class)
        true_iou = float(ft.model.savld_iou(p.tag_probs, true_idx)[0])
        has = bool(present[0])
        rule_keep = has and rule_iou > 0 and rule_iou >= threshold  # PretrainedIMD's rule, as shipped
        z_rgb, z_fbank, z_present = inputs(zs, path)
        z = zs.model.predict(z_rgb, None, z_fbank, z_present)  # kinetics400 as shipped: I3D's class
        by_gate = {"learned": p.probs[0]}
        for name, gate in (("keep_all", present.float()), ("rule", torch.tensor([float(rule_keep)]))):
            by_gate[name] = gated_probs(ft.model, rgb, fbank, gate)[0]
        by_gate["drop_all"] = ft.model.predict(rgb, None, fbank, torch.zeros_like(present)).probs[0]
        rows.append({
            "clip": Path(c["path"]).stem, "class": label, "audio_kind": c["audio_kind"],
            "audio_present": has, "relevance_known": c["audio_relevant"] != "",
            "true_relevant": c["audio_relevant"] == "true",
            "heard": [tags[i] for i in p.heard[0].nonzero().flatten().tolist()],
            "learned_relevance": round(float(p.relevance[0]), 4), "learned_keep": bool(p.audio_kept[0]),
            "rule_iou": round(rule_iou, 4), "rule_keep": rule_keep,
            "rule_true_class_iou": round(true_iou, 4),
            "rule_true_class_keep": has and true_iou > 0 and true_iou >= threshold,
            "zeroshot_class": zs.labels[int(z.probs.argmax())], "zeroshot_keep": bool(z.audio_kept[0]),
            **{f"pred_{g}": labels[int(q.argmax())] for g, q in by_gate.items()},
            **{f"p_true_{g}": round(float(q[true_idx[0]]), 4) for g, q in by_gate.items()},
            **{f"correct_{g}": labels[int(q.argmax())] == label for g, q in by_gate.items()},
        })  # fmt: skip
    return rows


KEEPS = {  # policy -> row field of its keep decision (None: a constant)
    "learned gate (fine-tuned)": "learned_keep",
    "SAVLD rule, fine-tuned model's class": "rule_keep",
    "SAVLD rule, true class": "rule_true_class_keep",
    "SAVLD rule, kinetics400 zero-shot (I3D's class)": "zeroshot_keep",
    "always keep": None,
    "always drop": None,
}
GATES = ("learned", "rule", "keep_all", "drop_all")


def summary(rows: list[dict]) -> str:
    """Keep/drop right against the truth per policy, and top-1 per gate, as markdown tables."""
    known = [r for r in rows if r["relevance_known"]]
    with_track = [r for r in rows if r["audio_present"]]

    def right(field: str | None, name: str, part: list[dict]) -> str:
        keep = [r[field] if field else name == "always keep" for r in part]
        return f"{sum(k == r['true_relevant'] for k, r in zip(keep, part, strict=True))}/{len(part)}"

    out = [f"| policy | keep/drop right ({len(known)} windows, relevance known) "
           f"| right ({len(with_track)} with a track; silent = not relevant) | kept (of {len(with_track)}) |",
           "|---|---|---|---|"]  # fmt: skip
    for name, field in KEEPS.items():
        kept = sum(r[field] if field else name == "always keep" for r in with_track)
        out.append(f"| {name} | {right(field, name, known)} | {right(field, name, with_track)} | {kept} |")
    out += ["", f"| gate | top-1 ({len(rows)}) | top-1 ({len(with_track)} with a track) | mean p(true class) |",
            "|---|---|---|---|"]  # fmt: skip
    for g in GATES:
        top1 = sum(r[f"correct_{g}"] for r in rows)
        top1_track = sum(r[f"correct_{g}"] for r in with_track)
        mean_p = sum(r[f"p_true_{g}"] for r in rows) / len(rows)
        out.append(f"| {g} | {top1}/{len(rows)} | {top1_track}/{len(with_track)} | {mean_p:.3f} |")
    return "\n".join(out)


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real-set", type=Path, default=ROOT / ".weights" / "real_set")
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "finetune_relevance")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results_finetune_relevance.jsonl")
    ap.add_argument("--reuse", action="store_true", help="evaluate RUN/best as it is (no training)")
    args = ap.parse_args()
    args.run.mkdir(parents=True, exist_ok=True)
    clips = write_manifest(args.real_set, args.run / "manifest.csv")
    if not (args.reuse and (args.run / "train" / "best" / "model.safetensors").is_file()):
        code = imd(["train", "--data", str(args.run / "manifest.csv"), "--out", str(args.run / "train"),
                    "--set", "init.from_model=kinetics400", "finetune.seed=0", "--epochs", "80",
                    "--device", "cpu"])  # fmt: skip
        if code != 0:
            return code
    rows = evaluate(args.run / "train", clips, args.real_set)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
