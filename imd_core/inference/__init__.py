"""Inference: files and folders (:class:`Predictor`), live sources (:class:`StreamingEngine`).

``results`` and ``streaming`` import only numpy; :class:`Predictor` (torch, the model,
the preprocessing) is imported on first use, so ``from imd_core.inference import
WindowResult`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imd_core.inference.inputs import WindowInput, expand_inputs, plan_windows
from imd_core.inference.results import AudioResult, LabelScore, WindowResult
from imd_core.inference.streaming import StreamingEngine, StreamStats, StreamWindow

if TYPE_CHECKING:
    from imd_core.inference.predictor import PathOutcome, Predictor

__all__ = [
    "AudioResult",
    "LabelScore",
    "PathOutcome",
    "Predictor",
    "StreamStats",
    "StreamWindow",
    "StreamingEngine",
    "WindowInput",
    "WindowResult",
    "expand_inputs",
    "plan_windows",
]


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "PathOutcome"):
        from imd_core.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
