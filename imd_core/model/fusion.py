"""Fusion of the RGB, motion and (gated) audio embeddings.

Default: a Gated Multimodal Unit (Arevalo et al. 2017, gmu-mmimdb, which the IMD
authors list among their sources). For ``N`` inputs ``x_i``:
``h_i = tanh(W_i x_i)``, ``z_i = sigmoid(U_i [x_1, ..., x_N])``, ``h = sum_i z_i * h_i``.
The option ``concat`` projects ``[x_1, ..., x_N]`` with one linear layer.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedMultimodalUnit(nn.Module):
    """GMU over ``len(in_dims)`` modalities.

    Args:
        in_dims: width of each input.
        out_dim: width of the fused output.
    """

    def __init__(self, in_dims: list[int] | tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList([nn.Linear(d, out_dim, bias=False) for d in in_dims])
        self.gates = nn.Linear(sum(in_dims), out_dim * len(in_dims))
        self.num_inputs = len(in_dims)
        self.out_dim = out_dim

    def forward(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs``: list of ``(B, D_i)`` -> ``(fused (B, out_dim), gates (B, N, out_dim))``."""
        h = torch.stack([torch.tanh(p(x)) for p, x in zip(self.proj, inputs, strict=True)], dim=1)  # (B,N,O)
        z = torch.sigmoid(self.gates(torch.cat(inputs, dim=-1))).view(-1, self.num_inputs, self.out_dim)
        return (z * h).sum(dim=1), z


class ConcatFusion(nn.Module):
    """Concatenation + linear projection + GELU (the ``fusion="concat"`` option)."""

    def __init__(self, in_dims: list[int] | tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(sum(in_dims), out_dim)
        self.act = nn.GELU()

    def forward(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, None]:
        """``inputs``: list of ``(B, D_i)`` -> ``(fused (B, out_dim), None)``."""
        return self.act(self.proj(torch.cat(inputs, dim=-1))), None
