"""Compute devices for inference: which device, how many CPU threads, which precision.

CUDA when present (bf16 autocast), else the CPU in fp32. Whole-forward ``torch.compile``
(:class:`CompiledForward`) is opt-in: it costs a compile per input shape (minutes on a
small CPU) and needs a C++ toolchain on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
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


def autocast_context(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager[Any]:
    """The autocast a forward runs under, for inference and training alike.

    Args:
        device: where the forward runs.
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU: fp32 is fastest for small CPU
            models), ``bf16`` (bf16 on either) or ``fp32`` (no autocast).
    """
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and precision == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class CompiledForward:
    """The model's whole forward under ``torch.compile(fullgraph=True, dynamic=False)``.

    One graph for everything (AST, both visual streams, relevance, gating, fusion, head),
    specialised to each input shape: a new batch size compiles once more, so callers
    keep batch sizes few (the :class:`~imd_core.inference.predictor.Predictor` pads
    partial batches) and warm up. ``reduce-overhead`` records the graph as a CUDA graph
    (a replay is one launch instead of hundreds: the batch-1 latency mode on a GPU);
    :meth:`__call__` marks each call as a new step, so a replay may reuse the last
    call's output memory: read the outputs before the next call.

    If the forward cannot be captured as one graph (a graph break, e.g. from another
    ``transformers`` version's AST code), the first call logs the reason once and falls
    back to ``fullgraph=False`` (pieces compiled, breaks run eagerly); ``break_reason``
    keeps the reason.

    Args:
        module: the model (called as ``module(*args, **kwargs)``).
        mode: ``default`` | ``reduce-overhead`` | ``max-autotune``.
        device: where it runs (``reduce-overhead`` needs CUDA).
        backend: ``torch.compile``'s backend: ``inductor`` (generates kernels); ``eager``
            or ``aot_eager`` capture the same graph without code generation (seconds
            instead of minutes: dry runs and debugging).
    """

    def __init__(
        self, module: torch.nn.Module, mode: str, device: torch.device, *, backend: str = "inductor"
    ) -> None:
        if mode not in COMPILE_MODES or mode == "none":
            raise ConfigError(f"unknown compile mode {mode!r}; choose one of {list(COMPILE_MODES[1:])}")
        if mode == "reduce-overhead" and device.type != "cuda":
            raise ConfigError(
                "compile mode 'reduce-overhead' (CUDA graphs) needs a CUDA device; use 'default' on CPU"
            )
        self.module, self.mode, self.backend = module, mode, backend
        self.fullgraph = True
        self.break_reason: str | None = None
        self._fn = self._compile(fullgraph=True)
        log.info("compiling the whole model forward with torch.compile(mode=%s, fullgraph=True)", mode)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are no longer read
        try:
            return self._fn(*args, **kwargs)
        except (torch._dynamo.exc.Unsupported, torch._dynamo.exc.UserError) as exc:
            if not self.fullgraph:
                raise
            self.break_reason = _first_line(exc)
            log.warning(
                "the model forward is not one graph (%s); compiling it in pieces instead (slower)",
                self.break_reason,
            )
            self.fullgraph = False
            self._fn = self._compile(fullgraph=False)
            return self._fn(*args, **kwargs)

    def _compile(self, *, fullgraph: bool) -> Any:
        if self.backend == "inductor":
            return torch.compile(self.module, mode=self.mode, fullgraph=fullgraph, dynamic=False)
        return torch.compile(self.module, backend=self.backend, fullgraph=fullgraph, dynamic=False)


def compile_forward(module: torch.nn.Module, mode: str, device: torch.device) -> CompiledForward | None:
    """:class:`CompiledForward` of ``module``, or ``None`` for ``mode == "none"`` (eager).

    Raises:
        ConfigError: unknown mode, or ``reduce-overhead`` without CUDA.
    """
    if mode not in COMPILE_MODES:
        raise ConfigError(f"unknown compile mode {mode!r}; choose one of {list(COMPILE_MODES)}")
    return None if mode == "none" else CompiledForward(module, mode, device)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work (for honest timings); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
