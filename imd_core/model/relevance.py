"""Relevance network and learnable irrelevant modality dropout.

The network (LayerNorm + 2-layer MLP on ``[audio, rgb, motion]``) predicts whether the
audio is relevant to the action, trained with BCE on the SAVLD IoU targets.
:func:`audio_gate` turns it (or the targets, in teacher forcing) into a 0/1 gate; at
inference the gate is ``p >= threshold``, and a clip without audio is always dropped.
"""

from __future__ import annotations

import torch
from torch import nn


class RelevanceNet(nn.Module):
    """``LayerNorm -> Linear -> GELU -> Linear -> 1`` on concatenated embeddings."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``features``: list of ``(B, D_i)`` -> relevance logit ``(B,)``."""
        x = self.norm(torch.cat(features, dim=-1))
        return self.fc2(self.act(self.fc1(x))).squeeze(-1)


class NoAudioToken(nn.Module):
    """The embedding that stands in for dropped audio: learned (default) or zeros."""

    def __init__(self, dim: int, mode: str = "learned") -> None:
        super().__init__()
        self.mode = mode
        if mode == "learned":
            self.token = nn.Parameter(torch.zeros(dim))
        elif mode == "zeros":
            self.register_buffer("token", torch.zeros(dim), persistent=False)
        else:
            raise ValueError(f"unknown no_audio mode {mode!r}; choose one of ['learned', 'zeros']")

    def forward(self, audio: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """``audio (B, D)``, ``gate (B,)`` in [0, 1] -> ``gate*audio + (1-gate)*token``."""
        g = gate.to(audio.dtype).unsqueeze(-1)
        return g * audio + (1 - g) * self.token.to(audio.dtype)


def relevance_targets(iou: torch.Tensor, *, tau: float = 0.0, soft: bool = False) -> torch.Tensor:
    """BCE targets from SAVLD IoU ``(B,)``: ``IoU > tau`` (default) or the IoU itself."""
    return iou.clamp(0, 1).float() if soft else (iou > tau).float()


def audio_gate(
    relevance_logit: torch.Tensor,
    audio_present: torch.Tensor,
    *,
    training: bool,
    mode: str,
    threshold: float = 0.5,
    iou: torch.Tensor | None = None,
    tau: float = 0.0,
    teacher: bool | torch.Tensor = True,
) -> torch.Tensor:
    """The audio gate ``(B,)`` in {0, 1} (straight-through: 0/1 forward, ``p``'s gradient).

    Args:
        relevance_logit: ``(B,)`` relevance network output.
        audio_present: ``(B,)`` bool, False for clips without an audio track.
        training: training-time gating applies only when True.
        mode: ``teacher`` | ``straight_through`` | ``teacher_then_straight_through``.
        threshold: keep audio iff ``sigmoid(logit) >= threshold``.
        iou: ``(B,)`` SAVLD IoU targets; required for teacher forcing.
        tau: relevant iff ``iou > tau``.
        teacher: for ``teacher_then_straight_through``, whether warm-up is still on: a
            bool, or a 0-dim bool tensor (the model's step counter compared on the device,
            so neither eager nor ``torch.compile(fullgraph=True)`` reads it on the host).
    """
    p = torch.sigmoid(relevance_logit.float())
    hard = (p >= threshold).float()
    present = audio_present.to(p.device).float()
    if not training:
        return hard * present
    if mode == "teacher_then_straight_through" and isinstance(teacher, torch.Tensor):
        straight = (hard + p - p.detach()) * present
        if iou is None:  # only an error while warming up: reading the flag syncs, but only here
            if bool(teacher):
                raise ValueError(
                    "teacher-forced gating needs SAVLD IoU targets: pass labels (and a SAVLD) or relevance_target"
                )
            return straight
        # select on the device: the same values as the Python branch, no host read
        return torch.where(teacher.to(p.device), (iou.to(p.device) > tau).float() * present, straight)
    use_teacher = mode == "teacher" or (mode == "teacher_then_straight_through" and teacher)
    if use_teacher:
        if iou is None:
            raise ValueError(
                "teacher-forced gating needs SAVLD IoU targets: pass labels (and a SAVLD) or relevance_target"
            )
        return (iou.to(p.device) > tau).float() * present
    if mode in ("straight_through", "teacher_then_straight_through"):
        return (hard + p - p.detach()) * present
    raise ValueError(f"unknown gating mode {mode!r}")
