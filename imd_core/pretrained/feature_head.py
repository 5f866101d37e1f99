"""The head fine-tuned on frozen I3D + YAMNet features: learned relevance, dropout, fusion."""

from __future__ import annotations

import torch
from torch import nn


class FeatureHead(nn.Module):
    """Learned relevance, complete dropout of irrelevant audio, late fusion, classifier.

    ``relevance``: MLP on ``[video features, audio embedding]`` -> p(audio relevant).
    ``logits = video_head(v) + gate * audio_head(a)``; ``gate`` is 0 or 1 (the audio is
    used whole or dropped whole), the teacher's target in training, ``p >= threshold`` at
    inference, and 0 without audio.
    """

    def __init__(
        self, num_classes: int, video_dim: int = 1024, audio_dim: int = 1024, hidden: int = 256
    ) -> None:
        super().__init__()
        self.video_head = nn.Sequential(nn.Dropout(0.3), nn.Linear(video_dim, num_classes))
        self.audio_head = nn.Sequential(nn.Dropout(0.3), nn.Linear(audio_dim, num_classes))
        self.relevance = nn.Sequential(
            nn.LayerNorm(video_dim + audio_dim),
            nn.Linear(video_dim + audio_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        )

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor, present: torch.Tensor, gate: torch.Tensor | None = None,
        threshold: float = 0.5,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """-> ``(logits (B,C), relevance_logit (B,), gate (B,))``; ``gate`` given = teacher forcing."""
        rel = self.relevance(torch.cat([video, audio], -1)).squeeze(-1)
        if gate is None:
            gate = (torch.sigmoid(rel) >= threshold).float()
        gate = gate * present.float()
        logits = self.video_head(video) + gate.unsqueeze(-1) * self.audio_head(audio)
        return logits, rel, gate
