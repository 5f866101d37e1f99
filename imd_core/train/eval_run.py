"""``imd eval`` behind the CLI: load a model folder, build the test data, evaluate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imd_core.errors import DataError

logger = logging.getLogger(__name__)


def select_split(index: Any, split: str | None) -> tuple[Any, str]:
    """The part of the dataset to evaluate: ``split``, else test, else val, else all."""
    from imd_core.data.manifest import subset_split

    if split == "all":
        return index, "all"
    if split is not None:
        part = subset_split(index, split)
        if not len(part):
            raise DataError(f"the dataset has no clips in split {split!r}; choose another --split or 'all'")
        return part, split
    for name in ("test", "val"):
        part = subset_split(index, name)
        if len(part):
            return part, name
    return index, "all"


def evaluate_model_folder(
    model_dir: Path,
    data: Path,
    *,
    views: tuple[int, int] = (1, 1),
    split: str | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Evaluates a model folder on a dataset; returns the ``imd eval --json`` mapping.

    Dataset classes are matched to the model's labels by name (case-insensitively);
    a class the model does not know is refused with the model's label list.
    """
    from imd_core.data.dataset import ClipDataset
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.model.checkpoint import load_model
    from imd_core.train.engine import resolve_train_device
    from imd_core.train.evaluate import evaluate
    from imd_core.train.setup import make_eval_loader

    dev = resolve_train_device(device)
    model = load_model(model_dir, device=dev)
    index = load_dataset_index(data, labels=model.labels)
    part, split_name = select_split(index, split)
    pre = ClipPreprocessor.from_model_config(model.config)
    ds = ClipDataset(part, pre, train=False, views=views)
    loader = make_eval_loader(ds, batch_size, num_workers, pin=dev.type == "cuda")
    metrics = evaluate(model, loader, device=dev, precision=precision)
    skipped = [(str(p), r) for p, r in getattr(ds, "skipped_files", lambda: [])()]
    return {
        "model": str(model_dir), "data": str(data), "split": split_name, "views": f"{views[0]}x{views[1]}",
        "labels": model.labels, "skipped": len(skipped), "skipped_files": skipped, **metrics,
    }
