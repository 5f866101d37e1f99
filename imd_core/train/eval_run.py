"""``imd eval`` behind the CLI: load a model folder, build the test data, evaluate.

Every wait for a batch is bounded by ``loader_timeout`` (:mod:`imd_core.train.watchdog`):
a file that hangs mid-stream inside FFmpeg ends the evaluation with a
:class:`~imd_core.train.watchdog.LoaderHang` naming it (exit code 3), or, when the
loading runs in this process (``num_workers=0``), with that message on stderr and
exit code 3 from the watchdog thread.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from imd_core.errors import DataError
from imd_core.train.config import DEFAULT_LOADER_TIMEOUT

logger = logging.getLogger(__name__)


def eval_hang_message(hang: Any, timeout: float) -> str:
    """The one-line error of a hung decode in ``imd eval``."""
    if hang.path is None:
        return (
            f"no batch arrived for {hang.waited:.3g} s and no file was being decoded "
            f"(loader timeout {timeout:g} s); run `imd data check` on the dataset"
        )
    return (
        f"{hang.path}: decode hung for {hang.seconds:.3g} s mid-stream; remove the file from the "
        "dataset (`imd data check` bounds and reports every file) and evaluate again"
    )


def _print_fatal(message: str) -> None:
    print(f"imd eval: error: {message}", file=sys.stderr, flush=True)  # noqa: T201 - the process exits next


def select_split(index: Any, split: str | None) -> tuple[Any, str]:
    """The part of the dataset to evaluate: ``split``; by default the data's own ``test``
    split, else its ``val`` split, else every clip (clips without a split count as all)."""
    if split == "all":
        return index, "all"
    if split is not None:
        part = index.split(split)
        if not len(part):
            raise DataError(f"the dataset has no clips in split {split!r}; choose another --split or 'all'")
        return part, split
    for name in ("test", "val"):
        part = index.split(name)
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
    loader_timeout: float | None = None,
) -> dict[str, Any]:
    """Evaluates a model folder on a dataset; returns the ``imd eval --json`` mapping.

    Dataset classes are matched to the model's labels by name (case-insensitively); a
    class the model does not know is refused (DataError).

    Under ``torchrun`` each process evaluates its share of the batches and every
    process returns the same (gathered) result, equal to a single process's.

    Args:
        views: ``(clips, crops)`` test views; crops must be 1 or 3.
        loader_timeout: seconds one batch may take (default ``DEFAULT_LOADER_TIMEOUT``);
            past it the file being decoded is reported as hung (``LoaderHang``, exit code 3).
    """

    import torch

    from imd_core.train.distributed import init_distributed, shutdown_distributed

    joined_here = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info = init_distributed("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        return _evaluate_folder(
            model_dir,
            data,
            info,
            views=views,
            split=split,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            precision=precision,
            loader_timeout=DEFAULT_LOADER_TIMEOUT if loader_timeout is None else loader_timeout,
        )
    finally:
        if joined_here:
            shutdown_distributed()


def _evaluate_folder(
    model_dir: Path,
    data: Path,
    info: Any,
    *,
    views: tuple[int, int],
    split: str | None,
    batch_size: int,
    num_workers: int,
    device: str,
    precision: str,
    loader_timeout: float,
) -> dict[str, Any]:
    import tempfile

    from imd_core.data.dataset import ClipDataset, DecodeLog
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.model.checkpoint import load_model
    from imd_core.train.engine import resolve_train_device
    from imd_core.train.evaluate import evaluate
    from imd_core.train.setup import make_eval_loader
    from imd_core.train.watchdog import LoaderWatchdog

    if not loader_timeout > 0:
        from imd_core.errors import ConfigError

        raise ConfigError(f"the loader timeout must be > 0 seconds, got {loader_timeout}")

    dev = resolve_train_device(device, info.local_rank)
    model = load_model(model_dir, device=dev)
    # Clips without a split stay in "train" (ratio 1, 0, 0): only explicit splits select.
    index = load_dataset_index(data, labels=model.labels, split_ratios=(1.0, 0.0, 0.0))
    part, split_name = select_split(index, split)
    clips, crops = views
    pre = ClipPreprocessor.from_model_config(model.config, test_clips=clips, test_crops=crops)
    with tempfile.TemporaryDirectory(prefix="imd-eval-decoding-", ignore_cleanup_errors=True) as log_dir:
        log = DecodeLog(log_dir)
        ds = ClipDataset(part, pre, train=False, multi_view=clips * crops > 1, decode_log=log)
        loader = make_eval_loader(
            ds,
            batch_size,
            num_workers,
            pin=dev.type == "cuda",
            rank=info.rank,
            world_size=info.world_size,
            timeout=loader_timeout,
        )
        dog = LoaderWatchdog(
            loader_timeout, log, message=lambda h: eval_hang_message(h, loader_timeout), on_fatal=_print_fatal
        )
        with dog:
            metrics = evaluate(model, dog.watch(loader), device=dev, precision=precision, dist=info)
    items = metrics.pop("skipped_items")
    skipped = [(part.entries[i].path, why) for i, why in items]
    return {
        "model": str(model_dir),
        "data": str(data),
        "split": split_name,
        "views": f"{clips}x{crops}",
        "labels": model.labels,
        **metrics,
        "skipped_files": skipped,
    }
