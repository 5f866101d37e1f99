"""I3D RGB as IMD's visual encoder: the ``visual_encoder="i3d"`` option of :class:`IMDModel`.

Speaks the two-stream encoder's interface with one embedding instead of two: I3D's
pooled ``Mixed_5c`` features (1024-d). The motion input is unused and the Kinetics-400
logits layer is left out.
"""

from __future__ import annotations

import torch
from torch import nn

from imd_core.pretrained.i3d import FEATURE_DIM, I3D


class I3DEncoder(nn.Module):
    """``rgb (B, T, 3, H, W)`` in [-1, 1] -> ``(features (B, 1024),)``."""

    feature_dim = FEATURE_DIM

    def __init__(self) -> None:
        super().__init__()
        self.net = I3D(num_classes=1)
        del self.net.Logits  # forward_features stops before it; no unused parameters

    @property
    def embed_dims(self) -> list[int]:
        """Width of each embedding :meth:`forward` returns."""
        return [FEATURE_DIM]

    def forward(self, rgb: torch.Tensor, motion: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        """``rgb (B, T, 3, H, W)`` -> ``(features (B, 1024),)``; ``motion`` is ignored."""
        if rgb.dim() != 5 or rgb.shape[2] != 3:
            raise ValueError(f"I3D expects rgb (B, T, 3, H, W), got {tuple(rgb.shape)}")
        return (self.net.forward_features(rgb.transpose(1, 2)),)  # I3D takes (B, 3, T, H, W)
