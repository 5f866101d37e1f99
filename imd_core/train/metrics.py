"""Classification and IMD metrics, the confusion-matrix image and ``metrics.csv``."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


class MetricAccumulator:
    """Collects per-clip predictions and computes every evaluation number at the end.

    ``update`` takes one batch: ``logits (B,C)``, ``labels (B,)``, ``audio_kept (B,)``
    bool, and optionally ``relevance_prob (B,)`` with ``relevance_target (B,)`` (the
    IoU target; relevant when > ``tau``) and the batch ``loss``.
    """

    def __init__(self, num_classes: int, tau: float = 0.0):
        self.num_classes = num_classes
        self.tau = tau
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._kept: list[torch.Tensor] = []
        self._rel_prob: list[torch.Tensor] = []
        self._rel_target: list[torch.Tensor] = []
        self._loss_sum = 0.0
        self._loss_n = 0

    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        audio_kept: torch.Tensor | None = None,
        relevance_prob: torch.Tensor | None = None,
        relevance_target: torch.Tensor | None = None,
        loss: float | None = None,
    ) -> None:
        n = labels.shape[0]
        self._logits.append(logits.detach().float().cpu())
        self._labels.append(labels.detach().long().cpu())
        kept = audio_kept if audio_kept is not None else torch.ones(n, dtype=torch.bool)
        self._kept.append(kept.detach().bool().cpu().reshape(n))
        if relevance_prob is not None and relevance_target is not None:
            self._rel_prob.append(relevance_prob.detach().float().cpu().reshape(-1))
            self._rel_target.append(relevance_target.detach().float().cpu().reshape(-1))
        if loss is not None:
            self._loss_sum += float(loss) * n
            self._loss_n += n

    @property
    def count(self) -> int:
        return sum(t.shape[0] for t in self._labels)

    def compute(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """All metrics as a JSON-ready mapping (accuracies in [0, 1]; None when undefined)."""
        c = self.num_classes
        if not self._labels:
            return {"clips": 0}
        logits = torch.cat(self._logits)
        labels = torch.cat(self._labels)
        kept = torch.cat(self._kept)
        pred = logits.argmax(dim=1)
        correct = pred == labels
        k = min(5, c)
        top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
        confusion = torch.zeros(c, c, dtype=torch.long)
        confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
        per_class_total = confusion.sum(dim=1)
        per_class_acc = [
            (confusion[i, i].item() / per_class_total[i].item()) if per_class_total[i] > 0 else None for i in range(c)
        ]
        present = [a for a in per_class_acc if a is not None]
        names = list(class_names) if class_names is not None else [str(i) for i in range(c)]

        def acc(mask: torch.Tensor) -> float | None:
            return correct[mask].float().mean().item() if mask.any() else None

        out: dict[str, Any] = {
            "clips": int(labels.shape[0]),
            "loss": self._loss_sum / self._loss_n if self._loss_n else None,
            "top1": correct.float().mean().item(),
            "top5": top5.float().mean().item(),
            "mean_class_accuracy": sum(present) / len(present) if present else None,
            "per_class_accuracy": {names[i]: per_class_acc[i] for i in range(c)},
            "confusion_matrix": confusion.tolist(),
            "audio_drop_rate": (~kept).float().mean().item(),
            "accuracy_audio_kept": acc(kept),
            "accuracy_audio_dropped": acc(~kept),
            "clips_audio_kept": int(kept.sum().item()),
            "clips_audio_dropped": int((~kept).sum().item()),
            "relevance_accuracy": None,
        }
        if self._rel_prob and sum(t.numel() for t in self._rel_prob):
            prob = torch.cat(self._rel_prob)
            target = torch.cat(self._rel_target) > self.tau
            out["relevance_accuracy"] = ((prob >= 0.5) == target).float().mean().item()
            out["relevance_target_rate"] = target.float().mean().item()
        return out


def save_confusion_png(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = "") -> Path:
    """Draws a row-normalised confusion matrix (rows: true class) with matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    m = torch.tensor(confusion, dtype=torch.float32)
    norm = m / m.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    side = min(4 + 0.35 * n, 30)
    fig = Figure(figsize=(side, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if n <= 60:
        ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels=list(class_names), fontsize=7)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if m[i, j] > 0:
                        ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (rows normalised)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
    return path


METRIC_COLUMNS = (
    "epoch", "step", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
    "val_mean_class_accuracy", "val_relevance_accuracy", "val_audio_drop_rate", "elapsed_s",
)


class MetricsCsv:
    """``metrics.csv``: one row per epoch; on resume, rows of unfinished epochs are dropped."""

    def __init__(self, path: Path, keep_epochs_below: int | None = None):
        self.path = path
        rows: list[dict[str, str]] = []
        if keep_epochs_below is not None and path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < keep_epochs_below]
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        clean = {k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_COLUMNS}
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=METRIC_COLUMNS).writerow(clean)


class TensorBoardLog:
    """Thin wrapper over ``SummaryWriter``; a no-op when TensorBoard is missing."""

    def __init__(self, folder: Path, enabled: bool = True):
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed; no TensorBoard logs will be written")
            return
        self._writer = SummaryWriter(log_dir=str(folder))

    def scalars(self, values: dict[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and value is not None:
                self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
