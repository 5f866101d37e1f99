"""Reading model weights safely: safetensors only, checked against the model before loading.

Every model folder kind (IMD models, pretrained folders) and the backbone loaders use
these: a pickle is never unpickled, a header that does not fit the model is refused
before any tensor is read or any model allocated, NaN weights are refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imd_core.errors import CheckpointError

WEIGHTS_NAME = "model.safetensors"
_PICKLE_NAMES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt", "model.pkl")


def weights_path(folder: Path) -> Path:
    """``folder/model.safetensors`` once its first bytes say safetensors (pickles refused)."""
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        pickles = [n for n in _PICKLE_NAMES if (folder / n).exists()]
        hint = f" (found {pickles[0]}, a pickle: IMD Studio never loads pickles)" if pickles else ""
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}{hint}; re-save the model with save_model")
    with open(path, "rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    # safetensors: an 8-byte little-endian header length, then the JSON header
    is_safetensors = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8
    if not is_safetensors:
        if head[:1] == b"\x80" or head[:2] == b"PK":  # pickle protocol 2+ / torch.save zip archive
            raise CheckpointError(
                f"{path} is a pickle, not safetensors; refusing to unpickle it (re-save the model with save_model)"
            )
        raise CheckpointError(f"{path} is not a safetensors file; re-save the model with save_model")
    return path


def read_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Reads ``model.safetensors``; refuses pickles (it never unpickles anything)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = weights_path(Path(folder))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); re-save the model") from None


# safetensors dtype names of the float types a model's weights may be stored in
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_DTYPE_NAMES = {torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}


def read_weights_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of a safetensors file, read from its header alone.

    No tensor is read, so a file that claims terabytes costs nothing to inspect.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            out = {}
            for key in fh.keys():
                part = fh.get_slice(key)
                out[key] = (str(part.get_dtype()), tuple(int(n) for n in part.get_shape()))
            return out
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); re-save the model") from None


def expected_tensors(build: Callable[[], nn.Module]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of the state dict ``build()`` makes, built on the meta device.

    Meta tensors have shapes but no storage, so this allocates nothing however large
    the architecture.
    """
    with torch.device("meta"):
        model = build()
    return {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}


def check_weights_header(
    path: str | os.PathLike, expected: dict[str, tuple[torch.dtype, tuple[int, ...]]]
) -> None:
    """Refuses a weights file whose header does not hold exactly the tensors ``expected``.

    Every expected tensor must be present with its shape; float tensors must be stored
    as a float type (F16, BF16, F32, F64: int32 "weights" are refused), others as their
    own type. Runs before any tensor is read or any model is allocated.

    Raises:
        CheckpointError: one line naming the first offending tensor and what to do.
    """
    header = read_weights_header(path)
    misfit = _misfit({k: v[1] for k, v in expected.items()}, {k: v[1] for k, v in header.items()})
    if misfit:
        raise CheckpointError(f"weights in {path} do not fit the model: {misfit}")
    for key, (dtype, _) in expected.items():
        stored = header[key][0]
        if dtype.is_floating_point and stored not in _FLOAT_DTYPES:
            raise CheckpointError(
                f"weights in {path}: {key} is stored as {stored}, not a float type ({', '.join(_FLOAT_DTYPES)})"
            )
        if not dtype.is_floating_point and stored != _DTYPE_NAMES.get(dtype, stored):
            raise CheckpointError(
                f"weights in {path}: {key} is stored as {stored}, the model keeps it as {_DTYPE_NAMES[dtype]}"
            )


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuses weights that hold NaN or infinity (a diverged run), naming the first such tensor."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"weights in {source}: {key} holds NaN or infinite values (a diverged or damaged model); "
                "use an earlier checkpoint or retrain"
            )


def verify_weights_file(
    path: str | os.PathLike,
    build: Callable[[], nn.Module],
    *,
    hint: str = "re-save or rebuild the model folder",
) -> None:
    """:func:`check_weights_header` of ``path`` against a meta-device ``build()``.

    For any model folder kind: call it before the weights are read or the model built.

    Raises:
        CheckpointError: the header's first misfit, then ``hint`` (what to do).
    """
    path = Path(path)
    if path.name == WEIGHTS_NAME:  # a folder's weights: refuse a missing file or a pickle first
        path = weights_path(path.parent)
    try:
        check_weights_header(path, expected_tensors(build))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {hint}") from None


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Loads ``state`` strictly; a missing/unexpected/misshaped key raises CheckpointError."""
    own = model.state_dict()
    misfit = _misfit({k: v.shape for k, v in own.items()}, {k: v.shape for k, v in state.items()})
    if misfit:
        raise CheckpointError(f"weights in {source} do not fit the model: {misfit}")
    model.load_state_dict(state, strict=True)


def _misfit(model: dict[str, Any], stored: dict[str, Any]) -> str | None:
    """How stored tensor shapes (name -> shape) differ from the model's, in words; None if they fit."""
    missing = sorted(set(model) - set(stored))
    unexpected = sorted(set(stored) - set(model))
    shapes = [k for k in model if k in stored and tuple(stored[k]) != tuple(model[k])]
    what = []
    if missing:
        what.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        what.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        what.append(f"{len(shapes)} of other shape (e.g. {k}: model {tuple(model[k])} vs {tuple(stored[k])})")
    return "; ".join(what) or None
