"""``kinetics400``: an IMD model that works with no training, from real pretrained weights.

I3D names the action and YAMNet tags the audio (others' weights); the audio counts as
relevant when its tags' IoU with the SAVLD labels of the top class reaches a threshold
(the paper's target rule as the decision), and relevant audio adds its SAVLD evidence to
the video logits (docs/MODEL.md, "The kinetics400 model"). Same interface as ``IMDModel``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from imd_core.config_base import FrozenConfig
from imd_core.errors import ConfigError
from imd_core.model.outputs import IMDOutput, Prediction
from imd_core.model.savld import Savld, heard_sets, set_iou
from imd_core.pretrained.i3d import I3D
from imd_core.pretrained.i3d import NUM_CLASSES as I3D_CLASSES
from imd_core.pretrained.yamnet import YamNet

log = logging.getLogger(__name__)

NAME = "kinetics400"


@dataclasses.dataclass(frozen=True)
class PretrainedConfig(FrozenConfig):
    """The zero-training model: its backbones, its inputs and its rules.

    The input fields carry the names :class:`~imd_core.data.transforms.ClipPreprocessor`
    reads. Defaults are measured choices (docs/PERFORMANCE.md, "kinetics400 on the CPU").
    """

    name: str = NAME
    size: str = "i3d+yamnet"  # what the model manager shows as the size
    visual_encoder: Literal["i3d"] = "i3d"
    audio_tagger: Literal["yamnet"] = "yamnet"
    # "rule": I3D's Kinetics-400 head and the relevance rule (no training); "learned": a
    # FeatureHead fine-tuned on frozen features for the user's classes (imd pretrained finetune)
    head: Literal["rule", "learned"] = "rule"
    labels: tuple[str, ...] = ()
    audio_labels: tuple[str, ...] = ()

    # --- inputs ---
    num_frames: int = 16
    image_size: int = 224  # I3D was trained on 224 crops; smaller is faster (PERFORMANCE.md)
    motion: Literal["none"] = "none"  # I3D RGB only: no second stream
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # -> [-1, 1], I3D's input range
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    sampling: Literal["uniform", "dense"] = "dense"  # consecutive frames, as I3D was trained
    dense_interval: float = 0.08  # seconds between frames (12.5 fps: every 2nd frame at 25 fps)
    audio_seconds: float = 3.84  # 7 YAMNet patches of 0.96 s, hop 0.48 s
    sample_rate: int = 16000
    num_mel_bins: int = 64
    audio_frontend: Literal["yamnet"] = "yamnet"

    # --- relevance rule and dropout ---
    tag_top_k: int = 5
    relevance_tag_floor: str | None = "Silence"
    min_tag_score: float = 0.1  # tags below this probability are not heard
    relevance_threshold: float = 0.05  # keep audio iff IoU >= this (and > 0)
    audio_weight: float = 2.0  # logit bonus per unit of SAVLD evidence when audio is kept
    # "rule": IMD as above; "always": fuse whatever is heard (no dropout, an ablation);
    # "never": video only (every clip's audio dropped)
    audio_policy: Literal["rule", "always", "never"] = "rule"
    # Below this top probability the clip gets "no confident action" (calibrated on
    # in- and out-of-distribution clips, docs/RESULTS.md); 0 disables the state.
    confidence_threshold: float = 0.3

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"PretrainedConfig: {msg}")

        if not self.labels or not self.audio_labels:
            bad("labels and audio_labels must be non-empty")
        if not 8 <= self.num_frames <= 128:
            bad(f"num_frames must be in [8, 128] (I3D's temporal pooling), got {self.num_frames}")
        if not 112 <= self.image_size <= 448:
            bad(f"image_size must be in [112, 448], got {self.image_size}")
        if not 0.96 <= self.audio_seconds <= 60:
            bad(f"audio_seconds must be in [0.96, 60] (one YAMNet patch at least), got {self.audio_seconds}")
        if self.sample_rate != 16000 or self.num_mel_bins != 64:
            bad("YAMNet takes 16 kHz audio and 64 mel bins")
        if not 0 < self.dense_interval <= 1:
            bad(f"dense_interval must be in (0, 1] s, got {self.dense_interval}")
        if not 1 <= self.tag_top_k <= len(self.audio_labels):
            bad(f"tag_top_k must be in [1, {len(self.audio_labels)}], got {self.tag_top_k}")
        for name in ("min_tag_score", "relevance_threshold", "confidence_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.audio_weight <= 100.0:
            bad(f"audio_weight must be in [0, 100], got {self.audio_weight}")
        if self.relevance_tag_floor is not None and self.relevance_tag_floor not in self.audio_labels:
            bad(f"relevance_tag_floor {self.relevance_tag_floor!r} is not an audio label")

    @property
    def num_classes(self) -> int:
        return len(self.labels)


class PretrainedIMD(nn.Module):
    """I3D + YAMNet + SAVLD with the rule-based relevance decision and audio dropout."""

    def __init__(self, config: PretrainedConfig, savld: Savld) -> None:
        super().__init__()
        self.config = config
        # the rule head scores with I3D's own logits layer; a learned head keeps that layer
        # (Kinetics-400, unused) so that every fine-tuned folder holds the same backbone
        rule = config.head == "rule"
        self.video = I3D(num_classes=config.num_classes if rule else I3D_CLASSES)
        self.tagger = YamNet(num_classes=len(config.audio_labels))
        self.head = None
        if not rule:
            from imd_core.pretrained.feature_head import FeatureHead

            self.head = FeatureHead(config.num_classes)
        self.savld = savld
        matrix = savld.matrix(list(config.labels), list(config.audio_labels))
        self.register_buffer("savld_matrix", matrix, persistent=False)
        floor = config.relevance_tag_floor
        self.tag_floor_index = None if floor is None else list(config.audio_labels).index(floor)

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def audio_labels(self) -> list[str]:
        return list(self.config.audio_labels)

    @property
    def tagger_name(self) -> str:
        return f"YAMNet (AudioSet, {len(self.config.audio_labels)} labels)"

    def audio_features(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, P, 96, 64)`` log-mel patches -> the clip's YAMNet embedding ``(B, 1024)`` and
        tag probabilities ``(B, A)``, both the mean over its patches."""
        return self.tagger.clip_features(patches)

    def tag_probs(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, P, 96, 64)`` log-mel patches -> ``(B, A)`` clip tag probabilities (patch mean)."""
        return self.audio_features(patches)[1]

    def heard_tags(self, probs: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` bool: the top-k tags that count as heard (above the floor and the minimum)."""
        return heard_sets(probs, self.config.tag_top_k, self.tag_floor_index, self.config.min_tag_score)

    def savld_iou(
        self, probs: torch.Tensor, classes: torch.Tensor, matrix: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The paper's relevance IoU: the heard tags of ``probs`` ``(B, A)`` against the SAVLD
        labels of ``classes`` ``(B,)`` (the top class to decide, the true class as a target);
        ``matrix`` another ``(C, A)`` SAVLD (fine-tuning's classes), default the model's."""
        m = (self.savld_matrix if matrix is None else matrix).to(probs.device)
        return set_iou(self.heard_tags(probs), m[classes.long()])

    def forward(
        self,
        rgb: torch.Tensor,
        motion: torch.Tensor | None = None,
        *,
        fbank: torch.Tensor,
        audio_present: torch.Tensor | None = None,
    ) -> IMDOutput:
        """``rgb`` ``(B, T, 3, H, W)`` in [-1, 1] (or ``(B, V, T, 3, H, W)`` views, averaged);
        ``fbank``: ``(B, P, 96, 64)`` YAMNet log-mel patches. ``motion`` is ignored."""
        cfg = self.config
        views = 1
        if rgb.dim() == 6:
            views = rgb.shape[1]
            rgb = rgb.flatten(0, 1)
        feats = self.video.forward_features(rgb.permute(0, 2, 1, 3, 4).float())  # I3D takes (B, 3, T, H, W)
        feats = feats.view(-1, views, feats.shape[-1]).mean(1)
        b = feats.shape[0]
        present = (
            torch.ones(b, dtype=torch.bool, device=rgb.device) if audio_present is None else audio_present
        )
        if self.head is not None:
            return self._forward_learned(feats, fbank, present.bool())
        video_logits = self.video.logits_from_features(feats)
        probs = self.tag_probs(fbank)  # (B, A)
        heard = self.heard_tags(probs)
        iou = self.savld_iou(probs, video_logits.argmax(-1))
        keep = present.bool() & (iou > 0) & (iou >= cfg.relevance_threshold)
        if cfg.audio_policy != "rule":
            keep = present.bool() & torch.tensor(cfg.audio_policy == "always", device=keep.device)
        # the audio's evidence for each class: the best heard tag among the class's SAVLD labels
        # (tags the rule did not count add nothing)
        m = self.savld_matrix.to(probs.device).float()
        evidence = ((probs * heard).unsqueeze(1) * m.unsqueeze(0)).amax(-1)  # (B, C)
        logits = video_logits + cfg.audio_weight * evidence * keep.unsqueeze(-1).float()
        return IMDOutput(
            logits=logits,
            relevance_logit=torch.logit(iou.clamp(1e-6, 1 - 1e-6)),
            audio_kept=keep,
            audio_logits=torch.logit(probs.clamp(1e-6, 1 - 1e-6)),
            audio_embedding=probs,
            relevance_iou=iou,
            visual_logits=video_logits,
        )

    def _forward_learned(self, feats: torch.Tensor, fbank: torch.Tensor, present: torch.Tensor) -> IMDOutput:
        """The fine-tuned head: the learned relevance net decides, irrelevant audio is dropped whole."""
        audio, probs = self.audio_features(fbank)
        policy = self.config.audio_policy  # the ablations hold for a fine-tuned head too
        forced = None if policy == "rule" else torch.full_like(present, policy == "always", dtype=torch.float)
        logits, rel, gate = self.head(
            feats, audio, present, forced, threshold=self.config.relevance_threshold
        )
        video_only, _, _ = self.head(feats, audio, torch.zeros_like(present))
        iou = self.savld_iou(probs, logits.argmax(-1))
        return IMDOutput(
            logits=logits,
            relevance_logit=rel,
            audio_kept=gate > 0.5,
            audio_logits=torch.logit(probs.clamp(1e-6, 1 - 1e-6)),
            audio_embedding=audio,
            relevance_iou=iou,
            visual_logits=video_only,
        )

    @torch.no_grad()
    def predict(
        self,
        rgb: torch.Tensor,
        motion: torch.Tensor | None,
        fbank: torch.Tensor,
        audio_present: torch.Tensor | None = None,
        *,
        forward: Callable[..., IMDOutput] | None = None,
    ) -> Prediction:
        """Eval-mode forward -> the batch's :class:`Prediction` (as ``IMDModel.predict``)."""
        self.eval()
        out = (self.forward if forward is None else forward)(
            rgb, motion, fbank=fbank, audio_present=audio_present
        )
        probs = out.logits.float().softmax(-1)  # (B, C)
        tags = torch.sigmoid(out.audio_logits.float())  # (B, A)
        # the rule's relevance is the IoU itself; the learned net's a probability
        relevance = torch.sigmoid(out.relevance_logit.float()) if self.head is not None else out.relevance_iou
        return Prediction(
            probs=probs,
            tag_probs=tags,
            relevance=relevance,
            audio_kept=out.audio_kept,
            audio_present=torch.ones_like(out.audio_kept) if audio_present is None else audio_present.bool(),
            heard=self.heard_tags(tags),
            savld_iou=out.relevance_iou,
            savld_labels=self.savld_matrix[probs.argmax(-1)],
            # in float64, as a Python float compares: the threshold is not rounded to float32
            confident=probs.amax(-1).double() >= self.config.confidence_threshold,
        )

    def param_counts(self) -> dict[str, int]:
        def n(m: nn.Module) -> int:
            return sum(p.numel() for p in m.parameters())

        head = n(self.head) if self.head is not None else 0
        # I3D is this model's one visual stream (per_stream, as IMDModel reports its streams)
        return {"per_stream": n(self.video), "tagger": n(self.tagger), "head": head, "total": n(self)}
