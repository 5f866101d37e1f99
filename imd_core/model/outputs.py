"""What the models return: :class:`IMDOutput` (training forward) and :class:`Prediction`.

Shared by :class:`~imd_core.model.imd_model.IMDModel` and the pretrained
:class:`~imd_core.pretrained.kinetics400.PretrainedIMD`, which speak one interface.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class IMDOutput:
    """What :meth:`IMDModel.forward` returns (tensors keep their graph for training).

    Attributes:
        logits: ``(B, C)`` class logits (averaged over views for ``(B,V,...)`` input).
        relevance_logit: ``(B,)`` relevance network output; ``sigmoid`` = p(audio relevant).
        audio_kept: ``(B,)`` bool, whether the audio embedding was fused (gate = 1).
        audio_logits: ``(B, A)`` AST logits, or None when only a cached embedding was given.
        audio_embedding: ``(B, D_a)`` pooled AST embedding (before gating).
        relevance_iou: ``(B,)`` SAVLD IoU used as target, when labels/targets were given.
        visual_logits: ``(B, C)`` visual-only head logits, when the model has that head.
        loss: total loss (CE + weight x relevance BCE [+ weight x visual CE]) when
            ``labels`` were given.
        losses: the detached parts, ``{"ce": ..., "relevance_bce": ..., "visual_ce": ...}``.
    """

    logits: torch.Tensor
    relevance_logit: torch.Tensor
    audio_kept: torch.Tensor
    audio_logits: torch.Tensor | None
    audio_embedding: torch.Tensor
    relevance_iou: torch.Tensor | None = None
    visual_logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What ``predict`` returns: per-clip tensors on the model's device, nothing converted.

    :func:`~imd_core.inference.results.window_results` turns them into the one result type
    that the CLI, the batch tab and the live panel show.

    Attributes:
        probs: ``(B, C)`` float32 class probabilities.
        tag_probs: ``(B, A)`` float32 audio tag probabilities.
        relevance: ``(B,)`` float32, p(audio relevant) from the relevance network (the
            ``kinetics400`` rule: the IoU it decides on).
        audio_kept: ``(B,)`` bool, the audio was fused.
        audio_present: ``(B,)`` bool, the clip had audio.
        heard: ``(B, A)`` bool, the tags the relevance rule counted (top-k above the floor),
            so an explanation names only those.
        savld_iou: ``(B,)`` IoU of the heard tags with the SAVLD labels of the predicted
            class; None when the model has no SAVLD.
        savld_labels: ``(B, A)`` bool, the SAVLD labels of each clip's top class; None
            when the model has no SAVLD.
        confident: ``(B,)`` bool, False when the top probability is below the model's
            confidence threshold ("no confident action"); all True for models without one.
    """

    probs: torch.Tensor
    tag_probs: torch.Tensor
    relevance: torch.Tensor
    audio_kept: torch.Tensor
    audio_present: torch.Tensor
    heard: torch.Tensor
    savld_iou: torch.Tensor | None
    savld_labels: torch.Tensor | None
    confident: torch.Tensor
