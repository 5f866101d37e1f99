"""The IMD model: two visual streams, an AST tagger, relevance gating and fusion.

The relevance net scores the ``[audio, rgb, motion]`` embeddings; the gate keeps the
audio embedding or puts a no-audio token in its place; a GMU fuses the streams
and a head gives the class logits (data flow: docs/MODEL.md). Other backbones:
:mod:`imd_core.model.backbones`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from imd_core.errors import ConfigError
from imd_core.model.backbones import build_audio_tagger, build_visual_encoder, describe_tagger
from imd_core.model.config import ModelConfig
from imd_core.model.fusion import ConcatFusion, GatedMultimodalUnit
from imd_core.model.outputs import IMDOutput, Prediction
from imd_core.model.relevance import NoAudioToken, RelevanceNet, audio_gate, relevance_targets
from imd_core.model.savld import Savld, heard_sets, relevance_iou
from imd_core.model.vit_weights import load_vit_weights

logger = logging.getLogger(__name__)


class IMDModel(nn.Module):
    """Multimodal action recogniser with learnable irrelevant modality dropout.

    Args:
        config: the full architecture and IMD options.
        savld: the label dictionary used for IoU targets and ``Prediction.savld_iou``.
        load_pretrained: load ``config.ast_source`` / ``config.video_init`` weights;
            False builds the AST from ``config.ast_config`` with random weights (what
            :func:`~imd_core.model.checkpoint.load_model` does before loading the folder).
            I3D and YAMNet start random either way; real weights come from
            :func:`~imd_core.model.backbones.load_pretrained_backbones`.
    """

    def __init__(
        self, config: ModelConfig, *, savld: Savld | None = None, load_pretrained: bool = True
    ) -> None:
        super().__init__()
        if not config.labels:
            raise ConfigError("ModelConfig.labels is empty; give the action class names")
        # audio branch (the AST or YAMNet; named ``ast`` for every tagger: the training
        # cache and the checkpoints know it by that name)
        self.ast = build_audio_tagger(config, load_pretrained=load_pretrained)
        # keep the tagger's description in the config so a saved folder is self-contained
        config = describe_tagger(config, self.ast)
        self.config = config
        # visual encoder: two streams (RGB, motion) or I3D's one RGB embedding
        self.video = build_visual_encoder(config)
        if load_pretrained and config.video_init:
            for stream in (self.video.rgb, self.video.motion):
                load_vit_weights(stream, config.video_init)
        self.video.requires_grad_(config.video_trainable)
        dv, da = list(self.video.embed_dims), self.ast.embed_dim
        # visual-only head: auxiliary CE, and the class probabilities of the agreement features
        self.visual_head = nn.Linear(sum(dv), config.num_classes) if config.visual_head_weight > 0 else None
        agreement_dim = 2 * config.num_classes + 1 if config.relevance_agreement else 0
        self.relevance = RelevanceNet(sum(dv) + da + agreement_dim, config.relevance_hidden)
        self.no_audio = NoAudioToken(da, config.no_audio)
        if config.fusion == "gmu":
            self.fusion = GatedMultimodalUnit([*dv, da], config.fusion_dim)
        elif config.fusion == "concat":
            self.fusion = ConcatFusion([*dv, da], config.fusion_dim)
        else:  # from_dict already refuses other names; kept for direct construction
            raise ConfigError(f"unknown fusion {config.fusion!r}; choose one of ['gmu', 'concat']")
        self.head_drop = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(config.fusion_dim, config.num_classes)
        # training forward passes seen (micro-batches, not optimiser steps), for
        # teacher_then_straight_through; saved with the weights
        self.register_buffer("gating_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("savld_matrix", torch.zeros(0, 0, dtype=torch.bool), persistent=False)
        self.savld: Savld | None = None
        if savld is not None:
            self.set_savld(savld)
        self.tag_floor_index = self._find_tag_floor()  # a plain int: constant under torch.compile

    def train(self, mode: bool = True) -> IMDModel:
        super().train(mode)
        if not self.config.video_trainable:
            self.video.eval()  # frozen: I3D's batch-norm statistics stay those it was trained with
        return self

    # ------------------------------------------------------------------ labels / SAVLD
    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def audio_labels(self) -> list[str]:
        return self.ast.labels

    def set_savld(self, savld: Savld) -> None:
        """Uses ``savld`` for IoU targets; builds the ``(C, A)`` matrix for this model's labels."""
        self.savld = savld
        self.savld_matrix = savld.matrix(self.labels, self.audio_labels).to(self.head.weight.device)

    def _find_tag_floor(self) -> int | None:
        """Index of ``config.relevance_tag_floor`` among the AST labels (case-insensitive)."""
        name = self.config.relevance_tag_floor
        if name is None:
            return None
        lower = [a.lower() for a in self.audio_labels]
        if name.lower() not in lower:
            raise ConfigError(
                f"relevance_tag_floor {name!r} is not an audio label of this AST; "
                f"choose one of its labels (e.g. 'Silence') or null"
            )
        return lower.index(name.lower())

    @property
    def has_savld(self) -> bool:
        return self.savld_matrix.numel() > 0

    @property
    def tagger_name(self) -> str:
        """The audio tagger, in words (the model manager shows it)."""
        if self.config.audio_tagger == "yamnet":
            return f"YAMNet (AudioSet, {len(self.audio_labels)} labels)"
        return self.config.ast_source or f"AST built from config ({self.ast.config.num_hidden_layers} layers)"

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        rgb: torch.Tensor,
        motion: torch.Tensor,
        *,
        fbank: torch.Tensor | None = None,
        audio_embedding: torch.Tensor | None = None,
        audio_logits: torch.Tensor | None = None,
        audio_present: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        relevance_target: torch.Tensor | None = None,
    ) -> IMDOutput:
        """Runs the model.

        Args:
            rgb, motion: ``(B, T, 3, H, W)`` normalised frames, or ``(B, V, T, 3, H, W)``
                for V test views (logits are averaged over views). I3D ignores ``motion``
                (the preprocessor makes an empty one).
            fbank: ``(B, F, M)`` AST input (YAMNet: ``(B, P, 96, 64)`` log-mel patches); or
                give ``audio_embedding`` ``(B, D_a)`` (and ``audio_logits`` ``(B, A)``) from a
                cache instead.
            audio_present: ``(B,)`` bool; False forces the audio to be dropped. Default all True.
            labels: ``(B,)`` class indices: enables the losses (and IoU targets from the SAVLD).
            relevance_target: ``(B,)`` precomputed SAVLD IoU (or 0/1 relevance); relevant
                iff ``> relevance_tau``. Overrides the IoU computed from ``audio_logits``.
        """
        cfg = self.config
        views = 1
        if rgb.dim() == 6:
            views = rgb.shape[1]
            rgb = rgb.flatten(0, 1)  # (B*V, T, 3, H, W)
            motion = motion.flatten(0, 1) if motion.dim() == 6 else motion  # I3D's is empty
        if audio_embedding is None:
            if fbank is None:
                raise ValueError("pass fbank (B, F, M) or a cached audio_embedding (B, D_a)")
            audio_embedding, audio_logits = self.ast(fbank)
        b = audio_embedding.shape[0]
        device = audio_embedding.device
        present = (
            torch.ones(b, dtype=torch.bool, device=device) if audio_present is None else audio_present.bool()
        )

        visual = list(self.video(rgb, motion))  # [e_rgb, e_mot] or I3D's [e_rgb]: (B*V, D_i) each
        a = audio_embedding.to(visual[0].dtype).repeat_interleave(views, dim=0)  # (B*V, D_a)
        visual_logits = self.visual_head(torch.cat(visual, -1)) if self.visual_head is not None else None
        rel_in = [a, *visual]
        if cfg.relevance_agreement:
            rel_in += self._agreement_features(visual_logits, audio_logits, present, views)
        if cfg.relevance_detach_inputs:
            rel_in = [x.detach() for x in rel_in]
        rel_logit = self.relevance(rel_in).view(b, views).mean(1)  # (B,)

        iou = None
        if relevance_target is not None:
            iou = relevance_target.to(device).float()
        elif labels is not None and self.has_savld and audio_logits is not None:
            iou = relevance_iou(
                audio_logits.detach(), labels, self.savld_matrix, cfg.tag_top_k, self.tag_floor_index
            )

        if cfg.imd:
            # warm-up as a 0-dim bool tensor, never read on the host: int()/.item() would sync
            # a GPU every step and break a torch.compile(fullgraph=True) graph
            teacher: bool | torch.Tensor = True
            if self.training and cfg.gating == "teacher_then_straight_through":
                teacher = self.gating_steps < cfg.gating_warmup_steps
            gate = audio_gate(
                rel_logit,
                present,
                training=self.training,
                mode=cfg.gating,
                threshold=cfg.relevance_threshold,
                iou=iou,
                tau=cfg.relevance_tau,
                teacher=teacher,
            )
        else:
            gate = present.float()
        if self.training:
            self.gating_steps += 1
        a_gated = self.no_audio(a, gate.repeat_interleave(views))
        fused, _ = self.fusion([*visual, a_gated])
        logits = self.head(self.head_drop(fused)).view(b, views, -1).mean(1)  # (B, C)
        if visual_logits is not None:
            visual_logits = visual_logits.view(b, views, -1).mean(1)

        out = IMDOutput(
            logits=logits,
            relevance_logit=rel_logit,
            audio_kept=gate.detach() > 0.5,
            audio_logits=audio_logits,
            audio_embedding=audio_embedding,
            relevance_iou=iou,
            visual_logits=visual_logits,
        )
        if labels is not None:
            ce = F.cross_entropy(logits.float(), labels.long().to(device))
            loss = ce
            out.losses["ce"] = ce.detach()
            if visual_logits is not None:
                visual_ce = F.cross_entropy(visual_logits.float(), labels.long().to(device))
                loss = loss + cfg.visual_head_weight * visual_ce
                out.losses["visual_ce"] = visual_ce.detach()
            if cfg.imd and iou is not None:
                target = relevance_targets(iou, tau=cfg.relevance_tau, soft=cfg.relevance_soft_target)
                # clips without audio have no meaningful target (they are always dropped): masked out
                mask = present.float()
                per_clip = F.binary_cross_entropy_with_logits(rel_logit.float(), target, reduction="none")
                bce = (per_clip * mask).sum() / mask.sum().clamp(min=1.0)
                loss = loss + cfg.relevance_loss_weight * bce
                out.losses["relevance_bce"] = bce.detach()
            out.loss = loss
        return out

    def _agreement_features(
        self,
        visual_logits: torch.Tensor,
        audio_logits: torch.Tensor | None,
        present: torch.Tensor,
        views: int,
    ) -> list[torch.Tensor]:
        """Semantic agreement between what is seen and what is heard, ``(B*V, 2C + 1)``.

        ``p_v`` ``(B*V, C)``: visual-only class probabilities (detached: the visual head
        learns from its own CE). ``s`` ``(B*V, C)``: the audio's evidence for each class,
        the mean tag probability over the class's SAVLD labels. Returns ``[p_v * s, s,
        sum_c p_v * s]``; all zero for clips without audio.
        """
        if not self.has_savld:
            raise ConfigError(
                "relevance_agreement needs a SAVLD: build one (imd savld build) and set it on the model"
            )
        if audio_logits is None:
            raise ValueError("relevance_agreement needs audio_logits (B, A) with a cached audio_embedding")
        p_v = torch.softmax(visual_logits.detach().float(), -1)
        m = self.savld_matrix.to(p_v.device).float()  # (C, A)
        tags = torch.sigmoid(audio_logits.detach().float()) * present.float().unsqueeze(-1)  # (B, A)
        s = (tags @ m.T) / m.sum(1).clamp(min=1.0)  # (B, C)
        s = s.repeat_interleave(views, dim=0)
        joint = p_v * s
        dtype = visual_logits.dtype
        return [joint.to(dtype), s.to(dtype), joint.sum(-1, keepdim=True).to(dtype)]

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(
        self,
        rgb: torch.Tensor,
        motion: torch.Tensor,
        fbank: torch.Tensor,
        audio_present: torch.Tensor | None = None,
        *,
        forward: Callable[..., IMDOutput] | None = None,
    ) -> Prediction:
        """Eval-mode forward -> the batch's :class:`Prediction` (shapes as :meth:`forward`).

        ``forward``: what to call instead of :meth:`forward` with the same arguments,
        e.g. ``torch.compile(model, fullgraph=True)`` (the Predictor's ``compile`` option).
        """
        was_training = self.training
        self.eval()
        try:
            out = (self.forward if forward is None else forward)(
                rgb, motion, fbank=fbank, audio_present=audio_present
            )
        finally:
            self.train(was_training)
        cfg = self.config
        probs = out.logits.float().softmax(-1)  # (B, C)
        pred = probs.argmax(-1)  # (B,)
        iou = labels = None
        if self.has_savld:
            iou = relevance_iou(
                out.audio_logits, pred, self.savld_matrix, cfg.tag_top_k, self.tag_floor_index
            )
            labels = self.savld_matrix[pred]
        return Prediction(
            probs=probs,
            tag_probs=torch.sigmoid(out.audio_logits.float()),
            relevance=torch.sigmoid(out.relevance_logit.float()),
            audio_kept=out.audio_kept,
            audio_present=torch.ones_like(out.audio_kept) if audio_present is None else audio_present.bool(),
            heard=heard_sets(out.audio_logits.float(), cfg.tag_top_k, self.tag_floor_index),
            savld_iou=iou,
            savld_labels=labels,
            confident=torch.ones_like(out.audio_kept),
        )

    def param_counts(self) -> dict[str, int]:
        """``{"per_stream", "video", "ast", "relevance", "fusion_head", "total"}`` parameter counts
        (``per_stream``: one ViT stream, or I3D, the one stream it has)."""

        def n(m: nn.Module) -> int:
            return sum(p.numel() for p in m.parameters())

        return {
            "per_stream": n(self.video.rgb if self.config.visual_encoder == "two_stream_vit" else self.video),
            "video": n(self.video),
            "ast": n(self.ast),
            "relevance": n(self.relevance) + n(self.no_audio),
            "fusion_head": n(self.fusion) + n(self.head) + (n(self.visual_head) if self.visual_head else 0),
            "total": n(self),
        }
