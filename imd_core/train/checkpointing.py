"""Atomic checkpoints: ``last/`` and ``best/`` model folders plus the resume state.

Each folder is written to a temporary sibling and renamed, so a run killed at any instant
leaves the old folder or the new one, never half of one. ``last/training_state.pt`` is
written in the same folder (weights and state always match) and read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imd_core.errors import CheckpointError, TrainingError

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
STATE_VERSION = 1


def _replace_dir(tmp: Path, final: Path) -> None:
    """Moves ``tmp`` to ``final``, replacing it; each step is one atomic rename."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def recover_interrupted_swap(run_dir: Path) -> None:
    """Restores ``last/``/``best/`` if a run died between the two renames of a swap."""
    for name in ("last", "best"):
        final, old = run_dir / name, run_dir / f".{name}.old"
        if old.exists() and not final.exists():
            os.replace(old, final)
            logger.warning("restored %s from an interrupted checkpoint swap", final)
        for tmp in run_dir.glob(f".{name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def save_model_folder(
    model: torch.nn.Module, folder: Path, *, savld: Any, state: dict[str, Any] | None = None
) -> Path:
    """Writes a loadable model folder atomically (and the resume state, if given).

    Args:
        model: the bare ``IMDModel`` (not the DDP or compiled wrapper).
        folder: ``RUN_DIR/last`` or ``RUN_DIR/best``.
        savld: the SAVLD the model was trained with (saved as ``savld.json``).
        state: resume state from :func:`training_state`, saved as ``training_state.pt``.
    """
    from imd_core.model.checkpoint import save_model

    folder = Path(folder)
    from safetensors import SafetensorError

    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        save_model(model, tmp, savld=savld)
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
        # fsync the files so a power cut after the rename cannot leave empty files.
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    except (OSError, RuntimeError, SafetensorError) as exc:
        if isinstance(exc, RuntimeError) and not _is_write_failure(exc):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # the previous folder is untouched
        raise TrainingError(_write_failure_message(exc, folder)) from None
    _replace_dir(tmp, folder)
    return folder


def _is_write_failure(exc: BaseException) -> bool:
    """True for torch.save's reports of a failed write (ENOSPC shows as 'unexpected pos')."""
    text = str(exc)
    return isinstance(exc.__context__, OSError) or "unexpected pos" in text or "write failed" in text


def _write_failure_message(exc: BaseException, folder: Path) -> str:
    errnos = {getattr(e, "errno", None) for e in (exc, exc.__context__)}
    text = str(exc)
    if errnos & {errno.ENOSPC, errno.EDQUOT} or "unexpected pos" in text or "write failed" in text:
        try:
            free = f" ({shutil.disk_usage(folder.parent).free / 2**20:.0f} MiB free)"
        except OSError:
            free = ""
        return (
            f"disk full while saving {folder}{free}: free space on that drive and run again with --resume "
            f"(the previous {folder.name}/ is kept)"
        )
    reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    return f"cannot save {folder}: {reason}; fix the drive and run again with --resume (the previous {folder.name}/ is kept)"


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gauss": float(np_state[4]),
        "python_version": int(py_state[0]),
        "python_state": list(py_state[1]),
        "python_gauss": py_state[2],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_cached_gauss"],
        )
    )
    random.setstate((state["python_version"], tuple(state["python_state"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_state(
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    batch_in_epoch: int,
    step: int,
    progress: dict[str, Any],
) -> dict[str, Any]:
    """The resume state: where the run is and everything needed to continue it.

    Args:
        epoch: the epoch in progress (0-based).
        batch_in_epoch: micro-batches of that epoch already consumed; the resumed run
            skips exactly these in the epoch's (seeded) data order.
        step: optimiser steps taken so far.
        progress: early-stopping and bookkeeping values (numbers and lists only).
    """
    return {
        "version": STATE_VERSION,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "progress": progress,
    }


def load_training_state(folder: Path) -> dict[str, Any]:
    """Reads ``training_state.pt`` from ``last/`` with ``weights_only=True``.

    Raises:
        TrainingError: nothing to resume (no ``last/`` or no state in it).
        CheckpointError: the file is not a plain-tensor state (e.g. a pickle).
    """
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"nothing to resume: {path} does not exist; start without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(
            f"cannot read resume state {path}: {str(exc).splitlines()[0]}; start a new run"
        ) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(f"resume state {path} has an unknown format; start a new run")
    for key, kind in _STATE_KEYS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CheckpointError(
                f"resume state {path} is incomplete ({key!r} missing or not {kind.__name__}); "
                "start a new run in another --out folder"
            )
    missing = [k for k in _RNG_KEYS if k not in state["rng"]]
    if missing:
        raise CheckpointError(
            f"resume state {path} is incomplete (rng {missing[0]!r} missing); start a new run in another --out folder"
        )
    return state


# What training_state() writes and the engine reads back on --resume.
_STATE_KEYS: dict[str, type] = {
    "epoch": int, "batch_in_epoch": int, "step": int,
    "optimizer": dict, "scheduler": dict, "rng": dict, "progress": dict,
}  # fmt: skip
_RNG_KEYS = (
    "torch", "numpy_keys", "numpy_pos", "numpy_has_gauss", "numpy_cached_gauss",
    "python_version", "python_state", "python_gauss",
)  # fmt: skip
