"""Trains the demo audio tagger: a tiny ``ASTForAudioClassification`` on SynthAV audio.

The tagger plays the role of the paper's AudioSet AST on SynthAV: it tags a clip's
audio with AudioSet display names (``imd_core.synth.TAGGER_LABELS``). Input is exactly
what ``ASTFeatureExtractor`` computes (``imd_core.model.audio_features.waveform_to_fbank``)
with ``max_length`` sized for SynthAV clips (4 s = 400 frames). Multi-label BCE over the
manifest's ``audio_tags``; audio is decoded from the MP4s (AAC), as at inference.

Writes a Hugging Face folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) loadable with ``ASTForAudioClassification.from_pretrained``
and ``ASTFeatureExtractor.from_pretrained``, plus ``tagger_metrics.json``.

Example::

    .venv/bin/imd synth runs/synth_train --clips 1000 --seed 1
    .venv/bin/python scripts/train_tagger.py runs/synth_train runs/tagger --epochs 12
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from imd_core.model.audio_features import AudioFeatureConfig, waveform_to_fbank
from imd_core.model.config import TINY_AST_CONFIG
from imd_core.synth.classes import TAGGER_LABELS

TINY_TAGGER_LABELS = TAGGER_LABELS
CLIP_FRAMES = 400  # fbank frames of the longest SynthAV clip (4 s)

log = logging.getLogger("train_tagger")


def tiny_ast_config(
    max_length: int, labels: tuple[str, ...] = TINY_TAGGER_LABELS, hidden: int = 96, layers: int = 2
):
    """The model's ``tiny`` AST (``TINY_AST_CONFIG``: non-overlapping 16x16 patches) with our labels."""
    from transformers import ASTConfig

    fields = dict(TINY_AST_CONFIG)
    fields.update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=hidden * 4,
        max_length=max_length,
        hidden_dropout_prob=0.1,
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        problem_type="multi_label_classification",
    )
    return ASTConfig(**fields)


def read_rows(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _load_one(job: tuple[Path, AudioFeatureConfig]) -> tuple[torch.Tensor, int]:
    from imd_core.media.decode import decode_clip

    torch.set_num_threads(1)
    path, fcfg = job
    clip = decode_clip(path, video=False, sample_rate=fcfg.sample_rate)
    wave = clip.audio if clip.audio is not None else np.zeros(fcfg.sample_rate, np.float32)
    frames = min(CLIP_FRAMES, 1 + max(len(wave) - 400, 0) // 160)  # 25 ms windows, 10 ms hop
    return waveform_to_fbank(wave, fcfg.replace(max_length=CLIP_FRAMES)), frames


def load_features(
    data_dir: Path, rows: list[dict[str, str]], fcfg: AudioFeatureConfig, workers: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decodes every clip's audio (16 kHz mono) in ``workers`` processes.

    Returns:
        fbanks ``(N, CLIP_FRAMES, 128)`` of whole clips (so training can crop random
        ``max_length`` windows) and the number of real frames per clip ``(N,)``.
    """
    import multiprocessing as mp

    jobs = [(data_dir / r["path"], fcfg) for r in rows]
    with mp.get_context("spawn").Pool(workers) as pool:
        out = pool.map(_load_one, jobs, chunksize=8)
    return torch.stack([o[0] for o in out]), torch.tensor([o[1] for o in out])


def targets(rows: list[dict[str, str]], labels: tuple[str, ...]) -> torch.Tensor:
    index = {n: i for i, n in enumerate(labels)}
    y = torch.zeros(len(rows), len(labels))
    for i, row in enumerate(rows):
        for tag in filter(None, row["audio_tags"].split(";")):
            y[i, index[tag]] = 1.0
    return y


def average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    """AP of one label: mean precision at each positive in score order."""
    order = np.argsort(-scores, kind="stable")
    hits = y[order] > 0
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """mAP over labels, top-1 accuracy (top tag is one of the true tags) and exact-set F1."""
    model.eval()
    logits = torch.cat([model(input_values=x[i : i + batch]).logits for i in range(0, len(x), batch)])
    s, t = logits.sigmoid().numpy(), y.numpy()
    aps = [average_precision(s[:, j], t[:, j]) for j in range(t.shape[1])]
    top1 = t[np.arange(len(t)), s.argmax(1)].mean()
    pred = s > 0.5
    tp = (pred & (t > 0)).sum()
    f1 = 2 * tp / max(pred.sum() + (t > 0).sum(), 1)
    return {"mAP": float(np.nanmean(aps)), "top1": float(top1), "f1@0.5": float(f1), "clips": len(t)}


def augment(x: torch.Tensor, lengths: torch.Tensor, window: int, gen: torch.Generator) -> torch.Tensor:
    """A random ``window``-frame crop of each clip's real frames, one time mask and one
    frequency mask: ``(B, F, M) -> (B, window, M)``."""
    n, _, m = x.shape
    out = torch.empty(n, window, m)
    for i in range(n):
        s0 = int(torch.randint(0, max(int(lengths[i]) - window, 0) + 1, (1,), generator=gen))
        out[i] = x[i, s0 : s0 + window]
        t0 = int(torch.randint(0, window - 30, (1,), generator=gen))
        out[i, t0 : t0 + int(torch.randint(0, 30, (1,), generator=gen))] = 0
        f0 = int(torch.randint(0, m - 16, (1,), generator=gen))
        out[i, :, f0 : f0 + int(torch.randint(0, 16, (1,), generator=gen))] = 0
    return out


def centre(x: torch.Tensor, lengths: torch.Tensor, window: int) -> torch.Tensor:
    """The centred ``window`` frames of each clip, as ``ClipPreprocessor.audio_window`` takes them."""
    offs = [max(int(n) - window, 0) // 2 for n in lengths]
    return torch.stack([x[i, o : o + window] for i, o in enumerate(offs)])


def fit(
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    held_out: dict[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    window: int,
    epochs: int = 6,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
):
    """Trains a tiny AST on ``train = (fbank (N, F, M), targets (N, A), lengths (N,))``.

    ``held_out`` maps split names to ``(fbank (N, window, M), targets)``; ``val`` (when
    present) picks the best epoch. Returns the model and its metrics per held-out split.
    """
    from transformers import ASTForAudioClassification

    torch.manual_seed(seed)
    model = ASTForAudioClassification(tiny_ast_config(window, hidden=hidden, layers=layers))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    x, y, lengths = train
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -float("inf"), None
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            logits = model(input_values=augment(x[idx], lengths[idx], window, gen)).logits
            loss = loss_fn(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        val = evaluate(model, *held_out["val"]) if "val" in held_out else {"mAP": -total}
        log.info(
            "epoch %d loss %.4f val %s (%.0f s)", epoch + 1, total / len(x), val, time.perf_counter() - start
        )
        if val["mAP"] >= best:
            best, best_state = val["mAP"], {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, {s: evaluate(model, *d) for s, d in held_out.items()}


def save(model, out_dir: Path, fcfg: AudioFeatureConfig, metrics: dict) -> None:
    """Hugging Face folder: config + weights + ``ASTFeatureExtractor`` preprocessor config."""
    from transformers import ASTFeatureExtractor

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    ASTFeatureExtractor(
        **{k: v for k, v in fcfg.to_hf_dict().items() if k != "feature_extractor_type"}
    ).save_pretrained(out_dir)
    (out_dir / "tagger_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.info("saved tagger to %s: %s", out_dir, metrics)


def train(
    data_dir: Path,
    out_dir: Path,
    *,
    epochs: int = 6,
    batch_size: int = 8,
    lr: float = 1e-3,
    seconds: float = 2.56,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
) -> dict[str, dict[str, float]]:
    """Decodes a SynthAV folder, trains on ``train`` (``val`` picks the epoch), tests on ``test``."""
    fcfg = AudioFeatureConfig(max_length=int(round(seconds * 100)))
    rows = read_rows(data_dir)
    start = time.perf_counter()
    data = {}
    for split in ("train", "val", "test"):
        sub = [r for r in rows if r["split"] == split]
        if sub:
            data[split] = (*load_features(data_dir, sub, fcfg), targets(sub, TAGGER_LABELS))
    log.info("decoded %d clips in %.1f s", len(rows), time.perf_counter() - start)
    window = fcfg.max_length
    held_out = {s: (centre(x, n, window), y) for s, (x, n, y) in data.items()}
    x, n, y = data["train"]
    model, metrics = fit(
        (x, y, n),
        held_out,
        window=window,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        hidden=hidden,
        layers=layers,
    )
    save(model, out_dir, fcfg, metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path, help="a SynthAV folder (manifest.csv with audio_tags)")
    p.add_argument("out_dir", type=Path, help="where to save the Hugging Face tagger folder")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--seconds", type=float, default=2.56, help="tagger input length in seconds (100 frames/s)"
    )
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine more threads spin and slow down)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    metrics = train(
        args.data_dir,
        args.out_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seconds=args.seconds,
        seed=args.seed,
        hidden=args.hidden,
        layers=args.layers,
    )
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
