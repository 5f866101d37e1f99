"""Fine-tune on real features: the frozen I3D + YAMNet, a learned relevance net, fusion and a head.

``imd pretrained finetune --data DIR --out RUN`` (a folder of class sub-folders or a
manifest, as ``imd train`` takes):

1. every clip is decoded once (the whole clip, as ``imd predict`` does) and its frozen
   features are cached in ``RUN/features/`` by content (path, size, mtime, input
   settings): I3D's pooled 1024-d features, YAMNet's mean 1024-d embedding and mean tag
   probabilities, and whether the clip has audio. A crashed or repeated run reuses them.
2. :class:`FeatureHead` trains on the cache, in seconds on a CPU: the paper's *learned*
   relevance network (BCE against the SAVLD IoU target of the clip's true class: the rule
   ``kinetics400`` applies directly), irrelevant audio dropped (teacher forcing with the
   target in training, the net's decision at inference), late fusion and a head for the
   user's classes.
3. the best epoch (validation top-1) is saved as a model folder (``RUN/best``) that every
   front end loads like ``kinetics400``: same backbones, the user's classes.

Unfreezing the backbones is not offered yet (it needs decoded clips per step, the GPU
path of ``imd train``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imd_core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FEATURE_KEYS = ("video", "audio", "tags", "present")


class FeatureHead(nn.Module):
    """Learned relevance, complete dropout of irrelevant audio, late fusion, classifier.

    ``relevance``: MLP on ``[video features, audio embedding]`` -> p(audio relevant).
    ``logits = video_head(v) + gate * audio_head(a)``; ``gate`` is 0 or 1 (the audio is
    used whole or dropped whole), the teacher's target in training, ``p >= threshold`` at
    inference, and 0 without audio.
    """

    def __init__(
        self, num_classes: int, video_dim: int = 1024, audio_dim: int = 1024, hidden: int = 256
    ) -> None:
        super().__init__()
        self.video_head = nn.Sequential(nn.Dropout(0.3), nn.Linear(video_dim, num_classes))
        self.audio_head = nn.Sequential(nn.Dropout(0.3), nn.Linear(audio_dim, num_classes))
        self.relevance = nn.Sequential(
            nn.LayerNorm(video_dim + audio_dim),
            nn.Linear(video_dim + audio_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        )

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor, present: torch.Tensor, gate: torch.Tensor | None = None,
        threshold: float = 0.5,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """-> ``(logits (B,C), relevance_logit (B,), gate (B,))``; ``gate`` given = teacher forcing."""
        rel = self.relevance(torch.cat([video, audio], -1)).squeeze(-1)
        if gate is None:
            gate = (torch.sigmoid(rel) >= threshold).float()
        gate = gate * present.float()
        logits = self.video_head(video) + gate.unsqueeze(-1) * self.audio_head(audio)
        return logits, rel, gate


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    val_fraction: float = 0.2
    seed: int = 0
    relevance_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.epochs <= 10_000 or not 1 <= self.batch_size <= 4096:
            raise ConfigError("epochs must be in [1, 10000] and batch size in [1, 4096]")
        if not 0.0 < self.lr < 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("lr must be in (0, 1) and val fraction in [0, 1)")


# ----------------------------------------------------------------------------- features
def cache_key(path: str, settings: dict[str, Any]) -> str:
    st = os.stat(path)
    text = json.dumps([os.path.abspath(path), st.st_size, st.st_mtime_ns, settings], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


@torch.inference_mode()
def clip_features(predictor: Any, path: str) -> dict[str, torch.Tensor]:
    """The frozen features of one whole clip, decoded as ``imd predict`` decodes it."""
    model = predictor.model
    items = list(predictor.open(path))
    x = predictor.preprocess(items[0])
    rgb = x["rgb"].unsqueeze(0).permute(0, 2, 1, 3, 4).float()  # I3D takes (B, 3, T, H, W)
    audio, tags = model.audio_features(x["fbank"].unsqueeze(0))
    return {
        "video": model.video.forward_features(rgb)[0],
        "audio": audio[0],
        "tags": tags[0],
        "present": x["audio_present"].reshape(()).float(),
    }


def extract_features(
    predictor: Any, paths: list[str], cache_dir: Path
) -> tuple[list[dict | None], list[str]]:
    """Features of every path (cached under ``cache_dir``); unreadable files -> None + a reason."""
    from safetensors.torch import load_file, save_file

    from imd_core.errors import ImdError

    cache_dir.mkdir(parents=True, exist_ok=True)
    cfg = predictor.config
    settings = {k: getattr(cfg, k) for k in ("num_frames", "image_size", "dense_interval", "audio_seconds")}
    out: list[dict | None] = []
    errors: list[str] = []
    hits = 0
    for path in paths:
        file = cache_dir / f"{cache_key(path, settings)}.safetensors"
        if file.is_file():
            out.append(load_file(str(file)))
            hits += 1
            continue
        try:
            feats = clip_features(predictor, path)
        except ImdError as exc:
            errors.append(f"{path}: {exc}")
            out.append(None)
            continue
        tmp = file.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in feats.items()}, str(tmp))
        os.replace(tmp, file)
        out.append(feats)
    log.info("features: %d clips (%d from the cache), %d unreadable", len(paths), hits, len(errors))
    return out, errors


# ----------------------------------------------------------------------------- training
def relevance_targets(
    tags: torch.Tensor, labels: torch.Tensor, matrix: torch.Tensor, model: Any
) -> torch.Tensor:
    """The paper's target: IoU of the heard tags with the SAVLD labels of the *true* class > 0."""
    return (model.savld_iou(tags, labels, matrix) > 0).float()


def finetune(
    data: str | os.PathLike[str], out: str | os.PathLike[str], *, base: str = "kinetics400",
    options: FinetuneOptions = FinetuneOptions(), threads: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Runs the whole fine-tuning; returns the summary written to ``RUN/summary.json``."""
    from imd_core.data.manifest import load_dataset_index
    from imd_core.inference.predictor import Predictor
    from imd_core.model.savld import Savld
    from imd_core.pretrained.folder import save_finetuned
    from imd_core.train.events import EventWriter

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    events = EventWriter(out / "events.jsonl", run=str(out))
    torch.manual_seed(options.seed)
    index = load_dataset_index(
        data, split_ratios=(1.0 - options.val_fraction, options.val_fraction, 0.0), seed=options.seed
    )
    labels = list(index.labels)
    if len(labels) < 2:
        raise DataError(f"{data}: fine-tuning needs at least two classes, found {labels}")
    predictor = Predictor(base, device="cpu", threads=threads, batch_size=1, decode_workers=0)
    model = predictor.model
    train, val = index.split("train"), index.split("val")
    events.emit("run_started", config=f"finetune:{base}", device="cpu", precision="fp32", world_size=1,
                 epochs=options.epochs, train_clips=len(train.entries), val_clips=len(val.entries), classes=labels,
                 resumed=False, start_epoch=0, start_step=0, excluded=[], class_transfer=None)  # fmt: skip
    savld = Savld.build(labels, model.audio_labels) if not _covers(model.savld, labels) else model.savld
    matrix = savld.matrix(labels, model.audio_labels)
    sets = {}
    excluded: list[str] = []
    for name, part in (("train", train), ("val", val)):
        feats, errors = extract_features(predictor, [e.path for e in part.entries], out / "features")
        excluded += errors
        keep = [(f, e.label_index) for f, e in zip(feats, part.entries, strict=True) if f is not None]
        if not keep:
            sets[name] = None
            continue
        batch = {k: torch.stack([f[k] for f, _ in keep]) for k in FEATURE_KEYS}
        batch["labels"] = torch.tensor([i for _, i in keep])
        batch["target"] = relevance_targets(batch["tags"], batch["labels"], matrix, model)
        sets[name] = batch
    if sets["train"] is None:
        raise DataError(f"{data}: no readable training clip ({excluded[0] if excluded else 'none found'})")
    head = FeatureHead(len(labels))
    opt = torch.optim.AdamW(head.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    tr = sets["train"]
    n = len(tr["labels"])
    best = (-1.0, -1)
    best_state: dict[str, torch.Tensor] = {}
    best_metrics: dict[str, Any] = {}
    for epoch in range(options.epochs):
        head.train()
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, options.batch_size):
            idx = perm[i : i + options.batch_size]
            logits, rel, _ = head(
                tr["video"][idx], tr["audio"][idx], tr["present"][idx], gate=tr["target"][idx]
            )
            ce = F.cross_entropy(logits, tr["labels"][idx])
            mask = tr["present"][idx]
            bce = (F.binary_cross_entropy_with_logits(rel, tr["target"][idx], reduction="none") * mask).sum()
            loss = ce + options.relevance_weight * bce / mask.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        metrics = evaluate(head, sets["val"] or tr)
        if metrics["top1"] > best[0]:
            best = (metrics["top1"], epoch)
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            best_metrics = metrics
        events.emit("epoch", epoch=epoch, step=(epoch + 1) * -(-n // options.batch_size),
                     train={"loss": total / n, "clips": n}, val=metrics, best=best[1] == epoch)  # fmt: skip
    head.load_state_dict(best_state)
    folder = save_finetuned(model, head, labels, savld, out / "best")
    summary = {
        "classes": labels, "train_clips": n, "val_clips": 0 if sets["val"] is None else len(sets["val"]["labels"]),
        "best_epoch": best[1], "val_top1": best[0], "val": best_metrics,
        "excluded": excluded, "model": str(folder), "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    events.emit("run_finished", epochs_run=options.epochs, best_epoch=best[1], best_metric="val_top1",
                 best_value=best[0], stopped="completed", elapsed_s=summary["seconds"])  # fmt: skip
    events.close()
    return summary


@torch.no_grad()
def evaluate(head: FeatureHead, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    head.eval()
    logits, rel, gate = head(batch["video"], batch["audio"], batch["present"])
    pred = logits.argmax(-1)
    present = batch["present"].bool()
    right = ((torch.sigmoid(rel) >= 0.5).float() == batch["target"])[present]
    return {
        "top1": float((pred == batch["labels"]).float().mean()),
        "relevance_accuracy": float(right.float().mean()) if present.any() else None,
        "audio_drop_rate": float(1 - gate[present].mean()) if present.any() else None,
    }


def _covers(savld: Any, labels: list[str]) -> bool:
    return all(name in savld.mapping for name in labels)
