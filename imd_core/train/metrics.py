"""Classification and IMD metrics, the confusion-matrix image and ``metrics.csv``."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


class MetricAccumulator:
    """Collects per-clip predictions and computes every evaluation number at the end.

    ``update`` takes one batch: ``logits (B,C)``, ``labels (B,)``, ``audio_kept (B,)``
    bool, and optionally ``relevance_prob (B,)`` with ``relevance_target (B,)`` (the
    IoU target; relevant when > ``tau``) and the batch ``loss``. The relevance decision
    is ``relevance_prob >= threshold``: the model's own threshold, the one its gate uses.
    """

    def __init__(self, num_classes: int, tau: float = 0.0, threshold: float = 0.5):
        self.num_classes = num_classes
        self.tau = tau
        self.threshold = threshold
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
            (confusion[i, i].item() / per_class_total[i].item()) if per_class_total[i] > 0 else None
            for i in range(c)
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
            out["relevance_accuracy"] = ((prob >= self.threshold) == target).float().mean().item()
            out["relevance_target_rate"] = target.float().mean().item()
        return out


CONFUSION_LABEL_CHARS = 24  # longer class names are cut with an ellipsis (Kinetics has 40-character ones)


def _short_name(name: str, limit: int = CONFUSION_LABEL_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "\u2026"


def confusion_figure(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str = ""
) -> Figure:
    """A row-normalised confusion matrix (rows: true class) as a matplotlib ``Figure`` (Agg).

    Colours are the share of each true class (colour-bar ticks 0 %..100 %), the cells
    hold the counts (up to 20 classes), and sizes scale with the class count so that the
    image stays legible when the Training tab shows it at about 320 px.

    Args:
        confusion: ``(C, C)`` counts, ``confusion[true][predicted]``.
        class_names: ``C`` names, cut to :data:`CONFUSION_LABEL_CHARS` characters.
        title: Replaces ``confusion matrix`` in the title (the clip count is added).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    counts = np.asarray(confusion, dtype=np.int64).reshape(len(class_names), len(class_names))  # (C, C)
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    label_pt = float(np.clip(12.0 - n / 6.0, 6.0, 10.0))
    side = float(np.clip(2.0 + 0.22 * n, 4.5, 16.0))  # inches at 100 dpi; labels take about 2 of them
    fig = Figure(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # a canvas that can draw and measure, without pyplot
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    bar = fig.colorbar(im, ax=ax, shrink=0.85)
    bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    bar.ax.tick_params(labelsize=max(label_pt, 8.0))
    bar.set_label("share of the true class", fontsize=max(label_pt, 8.0))
    if n <= 60:
        names = [_short_name(str(c)) for c in class_names]
        ax.set_xticks(
            range(n),
            labels=names,
            fontsize=label_pt,
            rotation=45 if n <= 12 else 90,
            ha="right",
            va="top" if n <= 12 else "center",
            rotation_mode="anchor",
        )
        ax.set_yticks(range(n), labels=names, fontsize=label_pt)
    else:  # too many to name: the axes say so instead
        ax.set_xticks([])
        ax.set_yticks([])
    if n <= 20:
        cell_pt = float(np.clip(13.0 - n / 2.0, 6.0, 12.0))
        for i, j in zip(*np.nonzero(counts), strict=True):
            ax.text(
                j,
                i,
                str(int(counts[i, j])),
                ha="center",
                va="center",
                fontsize=cell_pt,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted" if n <= 60 else f"predicted ({n} classes)", fontsize=max(label_pt, 9.0))
    ax.set_ylabel("true" if n <= 60 else f"true ({n} classes)", fontsize=max(label_pt, 9.0))
    ax.set_title(
        f"{title or 'confusion matrix'} \u00b7 {int(counts.sum())} clips", fontsize=max(label_pt + 1.0, 10.0)
    )
    return fig


def save_confusion_png(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Writes :func:`confusion_figure` as a PNG and returns ``path``."""
    fig = confusion_figure(confusion, class_names, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
    return path


METRIC_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "val_mean_class_accuracy",
    "val_relevance_accuracy",
    "val_audio_drop_rate",
    "elapsed_s",
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
