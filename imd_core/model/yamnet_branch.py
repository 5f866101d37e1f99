"""YAMNet as IMD's audio tagger: the ``audio_tagger="yamnet"`` option of :class:`IMDModel`.

Speaks ``ASTBranch``'s interface, so the rest of the model and the training cache use it
unchanged. Input: log-mel patches ``(B, P, 96, 64)``. A clip's embedding and tags are
means over its patches (TF-YAMNet's clip scores); tags are returned as ``logit(mean p)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from imd_core.errors import ConfigError
from imd_core.pretrained.yamnet import EMBEDDING_DIM, MEL_BINS, NUM_CLASSES, PATCH_FRAMES, YamNet

#: YAMNet's 521 AudioSet display names in class-index order (from its class map).
LABELS_FILE = Path(__file__).resolve().parent.parent / "pretrained" / "yamnet_labels.txt"


def yamnet_labels() -> list[str]:
    """The 521 AudioSet names of YAMNet's outputs, shipped with the package."""
    return [line.strip() for line in LABELS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


class YamNetBranch(nn.Module):
    """YAMNet wrapped as a (frozen by default) audio tagger.

    Args:
        labels: the tagger's label names in logit order; default YAMNet's 521.
        trainable: fine-tune it (default False: frozen, eval mode, no gradients).
    """

    def __init__(self, labels: list[str] | tuple[str, ...] | None = None, *, trainable: bool = False) -> None:
        super().__init__()
        self._labels = list(labels) if labels else yamnet_labels()
        if len(self._labels) != NUM_CLASSES:
            raise ConfigError(
                f"YAMNet has {NUM_CLASSES} outputs but {len(self._labels)} tagger_labels were given; "
                "leave tagger_labels empty (YAMNet's AudioSet names) or give all 521"
            )
        self.net = YamNet(num_classes=NUM_CLASSES)
        self.trainable = trainable
        self.net.requires_grad_(trainable)
        if not trainable:
            self.net.eval()

    @property
    def labels(self) -> list[str]:
        """Audio label names in logit order."""
        return list(self._labels)

    @property
    def embed_dim(self) -> int:
        return EMBEDDING_DIM

    def train(self, mode: bool = True) -> YamNetBranch:
        super().train(mode)
        if not self.trainable:
            self.net.eval()
        return self

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``patches (B, P, 96, 64)`` -> ``(embedding (B, 1024), logits (B, 521))``."""
        if patches.dim() != 4 or tuple(patches.shape[2:]) != (PATCH_FRAMES, MEL_BINS):
            raise ValueError(
                f"YAMNet expects log-mel patches (B, P, {PATCH_FRAMES}, {MEL_BINS}), got {tuple(patches.shape)}; "
                "build the preprocessor from the model config (audio_frontend 'yamnet')"
            )
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            emb, probs = self.net.clip_features(patches)  # (B, 1024), (B, A)
        return emb, torch.logit(probs.clamp(1e-6, 1 - 1e-6))

    @torch.no_grad()
    def tag(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``patches (B, P, 96, 64)`` -> ``(embedding (B, 1024), sigmoid scores (B, A))``."""
        emb, logits = self.forward(patches)
        return emb, torch.sigmoid(logits.float())
