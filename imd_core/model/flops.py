"""FLOP counting with ``torch.utils.flop_counter`` and parameter summaries."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from imd_core.data.transforms import ClipPreprocessor
from imd_core.model.config import ModelConfig

DEFAULT_NUM_CLASSES = 400  # Kinetics-400, for size presets without labels


def count_flops(model: nn.Module, *, batch: int = 1, device: str | torch.device | None = None) -> int:
    """FLOPs of one eval forward of ``batch`` clips, one view each (a multiply-add = 2 FLOPs).

    Counts matmuls, convolutions and attention (SDPA) as registered in
    ``torch.utils.flop_counter``; element-wise ops and norms are not counted. Works on the
    ``meta`` device, so large models need no memory.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    cfg: ModelConfig = model.config
    dev = device or next(model.parameters()).device
    # blank inputs from the model's own preprocessor: the shapes are right for every model
    # family (AST fbank or YAMNet patches, two streams or one) without asking which it is
    blank = ClipPreprocessor.from_model_config(cfg)(
        np.zeros((cfg.num_frames, cfg.image_size, cfg.image_size, 3), np.uint8), None, train=False
    )
    rgb, motion, fbank = (
        blank[k].unsqueeze(0).expand(batch, *blank[k].shape).to(dev) for k in ("rgb", "motion", "fbank")
    )
    was_training = model.training
    model.eval()
    try:
        # the math backend decomposes attention into counted matmuls on every device (the CPU
        # flash kernel is not registered with the flop counter and would count as zero); the
        # same for I3D's oneDNN convs, so they are off while counting
        onednn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False  # (flags() would also reset TF32 and warn)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(rgb, motion, fbank=fbank)
    finally:
        torch.backends.mkldnn.enabled = onednn
        model.train(was_training)
    return int(counter.get_total_flops())


def build_for_size(size: str, num_classes: int = DEFAULT_NUM_CLASSES, **overrides: Any) -> nn.Module:
    """A randomly initialised model of ``size`` on the meta device (no weights, no hub).

    The AST gets the public AudioSet checkpoint's architecture (768 wide, 12 layers, 527
    labels) when the preset names a hub id, so the counts equal the real model's.
    """
    from transformers import ASTConfig

    from imd_core.model.imd_model import IMDModel

    data: dict[str, Any] = {"size": size, "labels": [f"class_{i}" for i in range(num_classes)], **overrides}
    cfg = ModelConfig.from_dict(data)
    if cfg.audio_tagger == "ast" and cfg.ast_config is None:
        ast = ASTConfig(num_labels=527, max_length=cfg.max_length, num_mel_bins=cfg.num_mel_bins).to_dict()
        cfg = cfg.replace(ast_config=ast, ast_source=None)
    with torch.device("meta"):
        return IMDModel(cfg, load_pretrained=False)


def model_info(model: nn.Module, *, count: bool = True) -> dict[str, Any]:
    """The ``imd model-info --json`` record of a model."""
    cfg: ModelConfig = model.config
    params = model.param_counts()
    return {
        "size": cfg.size,
        "params_per_stream": params["per_stream"],
        "params_total": params["total"],
        "gflops_per_clip": round(count_flops(model) / 1e9, 3) if count else None,
        "frames": cfg.num_frames,
        "image_size": cfg.image_size,
        "audio_seconds": cfg.audio_seconds,
    }
