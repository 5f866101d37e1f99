"""Compute devices for inference: which device, how many CPU threads, which precision.

CUDA when present, else CPU. On CUDA the forward pass runs under bf16 autocast (the
matrix products in bf16, reductions and softmax in fp32); on CPU it stays fp32, which is
what small models run fastest with on a laptop CPU. ``torch.compile`` (and CUDA graphs
through its ``reduce-overhead`` mode) is opt-in: it cuts batch-1 latency on a GPU but
costs a compile per new input shape and needs a C++ toolchain on CPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Literal

import torch

from imd_core.errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

DeviceChoice = Literal["auto", "cpu", "cuda"]
CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
COMPILE_MODES: tuple[str, ...] = ("none", "default", "reduce-overhead", "max-autotune")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turns ``auto``/``cpu``/``cuda``/``cuda:N`` into a usable ``torch.device``.

    Raises:
        ConfigError: on an unknown name.
        DeviceError: when CUDA is asked for but not available.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} requested but CUDA is not available; use --device cpu or auto"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} does not exist (this machine has {torch.cuda.device_count()} GPU(s))"
            )
        return dev
    raise ConfigError(f"unknown device {device!r}; choose one of {list(DEVICE_CHOICES)} (or cuda:N)")


def configure_threads(threads: int | None) -> int:
    """Sets the number of CPU threads torch uses for intra-op work; returns it.

    ``None`` keeps torch's default (one per core). Inter-op threads stay as they are:
    inference runs one graph at a time.
    """
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; nothing on CPU (fp32 is fastest for small CPU models)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(fn: Callable[..., Any], mode: str, device: torch.device) -> Callable[..., Any]:
    """Wraps ``fn`` with ``torch.compile`` unless ``mode == "none"``.

    ``reduce-overhead`` records CUDA graphs: worth it for batch-1 latency on a GPU, where
    launching ~hundreds of small kernels dominates. It is refused on CPU.
    """
    if mode not in COMPILE_MODES:
        raise ConfigError(f"unknown compile mode {mode!r}; choose one of {list(COMPILE_MODES)}")
    if mode == "none":
        return fn
    if mode == "reduce-overhead" and device.type != "cuda":
        raise ConfigError(
            "compile mode 'reduce-overhead' (CUDA graphs) needs a CUDA device; use 'default' on CPU"
        )
    log.info("compiling the model forward with torch.compile(mode=%s)", mode)
    return torch.compile(fn, mode=mode, dynamic=False)


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work (for honest timings); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
