"""The audio branch: a transformers ``ASTForAudioClassification`` tagger.

Returns the pooled audio embedding (mean of AST's CLS and distillation tokens, as
``ASTModel.pooler_output``) and the tagger's logits over its own labels (``id2label``;
527 AudioSet classes for the public checkpoints). Frozen by default (paper): no
gradients and always in eval mode, so its outputs can be cached per clip.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from imd_core.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)


def _ast_config(config: dict[str, Any] | Any):
    from transformers import ASTConfig

    if isinstance(config, ASTConfig):
        return config
    if not isinstance(config, dict):
        raise ConfigError(f"ast_config must be a mapping of ASTConfig fields, got {type(config).__name__}")
    data = dict(config)
    data.pop("model_type", None)
    data.pop("architectures", None)
    data.pop("transformers_version", None)
    try:
        return ASTConfig(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"ast_config is not a valid ASTConfig: {exc}") from None


class ASTBranch(nn.Module):
    """Wraps an ``ASTForAudioClassification``.

    Args:
        model: the tagger.
        trainable: fine-tune it (default False: frozen, eval mode, no gradients).
    """

    def __init__(self, model: nn.Module, *, trainable: bool = False) -> None:
        super().__init__()
        self.model = model
        self.trainable = trainable
        model.requires_grad_(trainable)
        if not trainable:
            model.eval()

    @classmethod
    def from_pretrained(cls, source: str, *, trainable: bool = False) -> ASTBranch:
        """Loads a hub id (e.g. ``MIT/ast-finetuned-audioset-10-10-0.4593``), a local folder,
        or a tagger name (``demo_tagger``: the demo model's SynthAV tagger, ``imd_core.resources``).

        Raises:
            CheckpointError: the folder or hub id cannot be loaded.
        """
        from transformers import ASTForAudioClassification

        from imd_core.resources import resolve_tagger_source

        source = resolve_tagger_source(source)

        # "org/name" is a hub id; absolute, relative ("./x", "../x", "~/x") or existing paths are folders
        looks_local = source.startswith(("/", ".", "~")) or os.path.exists(source) or source.count("/") > 1
        if looks_local and not os.path.isdir(source):
            raise CheckpointError(
                f"AST folder {source!r} does not exist; pass a folder saved with save_pretrained"
            )
        try:
            model = ASTForAudioClassification.from_pretrained(source, attn_implementation="sdpa")
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"cannot load the AST tagger from {source!r} ({first}); pass a local folder with config.json "
                "and model.safetensors, or a hub id when online"
            ) from None
        logger.info("loaded AST tagger from %s (%d labels)", source, model.config.num_labels)
        return cls(model, trainable=trainable)

    @classmethod
    def from_config(cls, config: dict[str, Any] | Any, *, trainable: bool = False) -> ASTBranch:
        """Builds a randomly initialised AST from an ``ASTConfig`` or its dict."""
        from transformers import ASTForAudioClassification

        cfg = _ast_config(config)
        cfg._attn_implementation = "sdpa"
        return cls(ASTForAudioClassification(cfg), trainable=trainable)

    @property
    def config(self):
        return self.model.config

    @property
    def labels(self) -> list[str]:
        """Audio label names in logit order (from ``id2label``)."""
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(self.model.config.num_labels)]

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_length(self) -> int:
        return int(self.model.config.max_length)

    @property
    def num_mel_bins(self) -> int:
        return int(self.model.config.num_mel_bins)

    def train(self, mode: bool = True) -> ASTBranch:
        super().train(mode)
        if not self.trainable:
            self.model.eval()  # a frozen tagger never runs dropout
        return self

    def forward(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``fbank (B, F, M)`` -> ``(embedding (B, D_a), logits (B, A))``."""
        if fbank.shape[1] != self.max_length or fbank.shape[2] != self.num_mel_bins:
            raise ValueError(
                f"AST expects fbank (B, {self.max_length}, {self.num_mel_bins}), got {tuple(fbank.shape)}; "
                "set audio_seconds/num_mel_bins to match the tagger"
            )
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.model.audio_spectrogram_transformer(fbank)
            pooled = out.pooler_output  # (B, D_a)
            logits = self.model.classifier(pooled)  # (B, A)
        return pooled, logits

    @torch.no_grad()
    def tag(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``fbank (B, F, M)`` -> ``(embedding (B, D_a), sigmoid scores (B, A))`` over :attr:`labels`."""
        emb, logits = self.forward(fbank)
        return emb, torch.sigmoid(logits.float())
