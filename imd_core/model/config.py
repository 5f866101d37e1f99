"""The model configuration: one frozen dataclass that fully describes an IMD model.

Architecture fields left ``None`` are filled from :func:`size_preset`, so the saved
``config.json`` always holds concrete values and a later change of presets never changes
a saved model. ``ClipPreprocessor`` reads the input fields (``num_frames``,
``image_size``, ``motion``, ...) by these exact names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from imd_core.config_base import FrozenConfig
from imd_core.errors import ConfigError

Size = Literal["tiny", "small", "base", "large"]
SIZES: tuple[str, ...] = ("tiny", "small", "base", "large")
VISUAL_ENCODERS: tuple[str, ...] = ("two_stream_vit", "i3d")
AUDIO_TAGGERS: tuple[str, ...] = ("ast", "yamnet")
YAMNET_MEL_BINS = 64  # YAMNet's log-mel patches (imd_core.pretrained.yamnet)

#: The public AudioSet AST (10.24 s, 128 mel bins, 527 labels); needs a model hub.
DEFAULT_AST_SOURCE = "MIT/ast-finetuned-audioset-10-10-0.4593"

# A tiny AST for tests and the CPU demo: 2.56 s of audio, non-overlapping 16x16 patches
# (8 x 16 = 128 tokens), 2 layers of width 96. The SynthAV tagger is trained from this.
TINY_AST_CONFIG: dict[str, Any] = {
    "hidden_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 384,
    "patch_size": 16,
    "frequency_stride": 16,
    "time_stride": 16,
    "max_length": 256,
    "num_mel_bins": 128,
}

# Architecture presets. small/base/large follow method.md's table: 768-wide blocks,
# 8/12/24 ViT blocks + 1/2/4 spatiotemporal blocks. small copies the old timm
# ``vit_small`` (768 wide, 8 deep, 8 heads, MLP ratio 3) because 8 standard ViT-B blocks
# alone would already be 57M parameters, 19% over the paper's 47.9M.
_FULL_SIZE_COMMON: dict[str, Any] = dict(
    num_frames=8,
    image_size=224,
    patch_size=16,
    embed_dim=768,
    st_dim=256,
    st_heads=4,
    audio_seconds=10.24,
    ast_source=DEFAULT_AST_SOURCE,
    ast_config=None,
    relevance_hidden=256,
)

_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        num_frames=8,
        image_size=112,
        patch_size=16,
        embed_dim=192,
        depth=4,
        num_heads=3,
        mlp_ratio=4.0,
        st_depth=1,
        st_dim=96,
        st_heads=2,
        audio_seconds=2.56,
        ast_source=None,
        ast_config=TINY_AST_CONFIG,
        relevance_hidden=128,
    ),
    # small/base/large: 768-wide blocks on 8 x 224 px frames with the AudioSet AST (method.md).
    "small": dict(_FULL_SIZE_COMMON, depth=8, num_heads=8, mlp_ratio=3.0, st_depth=1),
    "base": dict(_FULL_SIZE_COMMON, depth=12, num_heads=12, mlp_ratio=4.0, st_depth=2),
    "large": dict(_FULL_SIZE_COMMON, depth=24, num_heads=12, mlp_ratio=4.0, st_depth=4),
}

# Fields that define tensor shapes: a checkpoint and a model must agree on all of them.
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "labels",
    "visual_encoder",
    "audio_tagger",
    "num_frames",
    "image_size",
    "patch_size",
    "patch_stem",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "st_depth",
    "st_dim",
    "st_heads",
    "qkv_bias",
    "audio_seconds",
    "num_mel_bins",
    "relevance_hidden",
    "relevance_agreement",
    "fusion",
    "fusion_dim",
    "no_audio",
)
# What a model folder fixes when a run fine-tunes it: its shapes and its backbones.
FOLDER_FIXED_FIELDS = frozenset(ARCHITECTURE_FIELDS) | {
    "size",
    "ast_source",
    "ast_config",
    "video_init",
    "tagger_labels",
}


# Sane ranges of the numeric fields, checked before anything is built. They are generous
# (ViT-g is 1408 wide and 40 deep) but keep a hostile or mistyped config.json from asking
# for terabytes: the largest model they allow is a few GB, and loading still refuses
# any model whose weights file does not hold every tensor at its shape.
_BOUNDS: dict[str, tuple[float, float]] = {
    "num_frames": (1, 512),
    "image_size": (1, 1024),
    "audio_seconds": (0.01, 60.0),
    "sample_rate": (1000, 192_000),
    "num_mel_bins": (1, 512),
    "patch_size": (1, 256),
    "embed_dim": (1, 4096),
    "depth": (1, 64),
    "num_heads": (1, 256),
    "mlp_ratio": (0.01, 16.0),
    "st_depth": (0, 64),
    "st_dim": (1, 4096),
    "st_heads": (1, 256),
    "drop_path_rate": (0.0, 0.99),
    "tag_top_k": (1, 10_000),
    "relevance_hidden": (1, 4096),
    "relevance_tau": (0.0, 1.0),
    "relevance_loss_weight": (0.0, 1e6),
    "gating_warmup_steps": (0, 10**12),
    "visual_head_weight": (0.0, 1e6),
    "fusion_dim": (1, 4096),
    "head_dropout": (0.0, 0.99),
}
MAX_LABELS = 100_000

# The integer fields of an AST ``ast_config`` that size its tensors, with their ranges.
_AST_BOUNDS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, 4096),
    "num_hidden_layers": (1, 64),
    "num_attention_heads": (1, 256),
    "intermediate_size": (1, 16384),
    "patch_size": (1, 256),
    "frequency_stride": (1, 256),
    "time_stride": (1, 256),
    "max_length": (1, 6000),
    "num_mel_bins": (1, 512),
    "num_labels": (1, MAX_LABELS),
}


def check_ast_config(ast: dict[str, Any]) -> None:
    """Refuses an ``ast_config`` whose sizes are not whole numbers in a sane range.

    Raises:
        ConfigError: naming the field, its value and the valid range.
    """
    for key, (lo, hi) in _AST_BOUNDS.items():
        if key not in ast:
            continue
        value = ast[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(
                f"ModelConfig: ast_config.{key} must be a whole number in [{lo}, {hi}], got {value!r}; "
                "fix config.json"
            )
    hidden, heads = ast.get("hidden_size"), ast.get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        raise ConfigError(
            f"ModelConfig: ast_config.hidden_size {hidden} must be divisible by num_attention_heads {heads}"
        )
    labels = ast.get("id2label")
    if labels is not None and (not isinstance(labels, dict) or len(labels) > MAX_LABELS):
        raise ConfigError(
            f"ModelConfig: ast_config.id2label must be a mapping of at most {MAX_LABELS} labels"
        )


def size_preset(size: str) -> dict[str, Any]:
    """Returns the preset architecture values of ``size`` (a fresh dict).

    Raises:
        ConfigError: if ``size`` is not one of tiny, small, base, large.
    """
    if size not in _PRESETS:
        raise ConfigError(f"unknown model size {size!r}; choose one of {list(SIZES)}")
    return dict(_PRESETS[size])


@dataclasses.dataclass(frozen=True)
class ModelConfig(FrozenConfig):
    """Everything needed to build an :class:`~imd_core.model.imd_model.IMDModel`.

    Marked *paper* where method.md states the choice, *default* where it is ours.
    """

    size: Size = "tiny"
    labels: tuple[str, ...] = ()  # action class names, index = class id

    # --- backbones (docs/MODEL.md, "Backbones") ---
    # "two_stream_vit": the paper's RGB + motion ViT streams; "i3d": I3D RGB (one 1024-d
    # embedding where the two streams give two; no motion input; the ViT fields are unused)
    visual_encoder: Literal["two_stream_vit", "i3d"] = "two_stream_vit"
    # "ast": the paper's AST (ast_source / ast_config); "yamnet": YAMNet (AudioSet, 521
    # labels, 1024-d embedding) on 16 kHz log-mel patches
    audio_tagger: Literal["ast", "yamnet"] = "ast"
    # False: the visual encoder is frozen (weights and norm statistics). Default: trained
    # for the two-stream ViT (paper), frozen for I3D (its real weights, like the tagger's)
    video_trainable: bool | None = None
    # YAMNet's label names in logit order; empty: its 521 AudioSet names (shipped). Filled
    # when the model is built, so a saved folder holds them. Unused by the AST (id2label).
    tagger_labels: tuple[str, ...] = ()

    # --- inputs (read by the preprocessors under these names) ---
    num_frames: int | None = None  # default: 8 frames per clip
    image_size: int | None = None  # square crop side in pixels
    # default: "diff" (RGB frame differences) for the two-stream ViT, "none" for I3D
    motion: Literal["diff", "flow", "none"] | None = None
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # timm in21k ViT normalisation
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    audio_seconds: float | None = None  # AST input length; 10.24 s = 1024 fbank frames
    sample_rate: int = 16000  # paper (AST)
    num_mel_bins: int | None = None  # default: 128 for the AST (paper), 64 for YAMNet

    # --- visual streams (timm ViT blocks + spatiotemporal blocks) ---
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None  # ViT blocks per frame
    num_heads: int | None = None
    mlp_ratio: float | None = None
    st_depth: int | None = None  # spatiotemporal blocks across frames
    st_dim: int | None = None  # bottleneck width of a spatiotemporal block
    st_heads: int | None = None
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    # "linear": timm's patch embedding (paper; what ImageNet ViT weights fill).
    # "conv": a small convolutional stem with the same token grid (ours), for streams
    # trained from scratch on little data (the demo), where it learns far faster.
    patch_stem: Literal["linear", "conv"] = "linear"
    video_init: str | None = None  # timm hub id, or a local .safetensors/.pth file or folder

    # --- audio branch (AST) ---
    ast_source: str | None = None  # hub id or local folder; None: build from ast_config
    ast_config: dict | None = None  # transformers ASTConfig dict for a randomly initialised AST
    ast_trainable: bool = False  # paper: frozen tagger (the AST or YAMNet, whichever is used)
    tag_top_k: int = 5  # AST tags per clip used for the SAVLD IoU
    # An audio label (e.g. AudioSet's "Silence") that marks "nothing heard": top-k tags
    # scored at or below it do not count for the SAVLD IoU (ours; None = plain top-k).
    # Without it, a tagger that ranks an action tag second on a silent clip makes the
    # top-k IoU call silence relevant.
    relevance_tag_floor: str | None = None

    # --- relevance and learnable irrelevant modality dropout ---
    imd: bool = True  # False: never drop audio (plain three-way fusion, an ablation)
    relevance_hidden: int | None = None
    relevance_threshold: float = 0.5  # inference: drop audio if p(relevant) < this
    relevance_tau: float = 0.0  # relevant iff IoU > tau
    relevance_soft_target: bool = False  # BCE target = IoU instead of IoU > tau
    relevance_loss_weight: float = 1.0
    relevance_detach_inputs: bool = False  # stop relevance BCE gradients into the backbones
    gating: Literal["teacher", "straight_through", "teacher_then_straight_through"] = "teacher"
    # training forward passes (micro-batches: N per optimiser step with grad_accum_steps N)
    # of teacher forcing before straight-through
    gating_warmup_steps: int = 1000
    no_audio: Literal["learned", "zeros"] = "learned"
    # Semantic agreement features for the relevance net (ours, off by default): the
    # visual-only class probabilities times the audio's evidence for each class through
    # the SAVLD. An MLP on concatenated embeddings must learn "audio class == video
    # class" as a product of two 8-way codes, which it does poorly from little data;
    # these features give it that product directly. Needs visual_head_weight > 0.
    relevance_agreement: bool = False
    # Weight of an auxiliary visual-only cross-entropy (a linear head on the two stream
    # embeddings). Keeps the visual streams learning when relevant audio already names
    # the class; 0 disables the head.
    visual_head_weight: float = 0.0

    # --- fusion and head ---
    fusion: Literal["gmu", "concat"] = "gmu"
    fusion_dim: int | None = None  # default: embed_dim
    head_dropout: float = 0.0

    def __post_init__(self) -> None:
        preset = size_preset(self.size)
        yamnet = self.audio_tagger == "yamnet"
        for key, value in preset.items():
            if yamnet and key in ("ast_source", "ast_config"):
                continue  # YAMNet has no AST to describe
            if getattr(self, key) is None:
                # ast_source/ast_config are filled only as a pair, so an explicit
                # ast_config on a base model is not overridden by the hub default.
                if key == "ast_source" and self.ast_config is not None:
                    continue
                if key == "ast_config" and self.ast_source is not None:
                    continue
                object.__setattr__(self, key, value)
        if self.fusion_dim is None:
            object.__setattr__(self, "fusion_dim", self.embed_dim)
        if self.motion is None:
            object.__setattr__(self, "motion", "none" if self.visual_encoder == "i3d" else "diff")
        if self.num_mel_bins is None:
            object.__setattr__(self, "num_mel_bins", YAMNET_MEL_BINS if yamnet else 128)
        if self.video_trainable is None:
            object.__setattr__(self, "video_trainable", self.visual_encoder != "i3d")
        self._validate()

    def _validate(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"ModelConfig: {msg}")

        # Bounds first: a config.json is read before any weight, and a width of 1e6 would
        # ask for terabytes (and num_heads 0 would divide by zero) before the weights are seen.
        for name, (lo, hi) in _BOUNDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if not (math.isfinite(value) and lo <= value <= hi):
                bad(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}; fix config.json or the --set value")
        if len(self.labels) > MAX_LABELS:
            bad(f"{len(self.labels)} labels is more than {MAX_LABELS}; give fewer action classes")
        if not all(math.isfinite(v) for v in (*self.image_mean, *self.image_std)) or min(self.image_std) <= 0:
            bad(
                f"image_mean/image_std must be finite and image_std > 0, got {self.image_mean} / {self.image_std}"
            )
        if self.ast_config is not None:
            check_ast_config(self.ast_config)
        self._validate_backbones(bad)
        if self.patch_stem not in ("linear", "conv"):
            bad(f"unknown patch_stem {self.patch_stem!r}; choose one of ['linear', 'conv']")
        if self.patch_stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            bad(f"patch_stem 'conv' needs a power-of-two patch_size >= 2, got {self.patch_size}")
        if self.visual_encoder == "two_stream_vit" and self.image_size % self.patch_size:
            bad(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            bad(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if self.st_depth > 0 and self.st_dim % self.st_heads:
            bad(f"st_dim {self.st_dim} must be divisible by st_heads {self.st_heads}")
        if self.audio_seconds <= 0:
            bad(f"audio_seconds must be > 0, got {self.audio_seconds}")
        if not 0.0 <= self.relevance_threshold <= 1.0:
            bad(f"relevance_threshold must be in [0, 1], got {self.relevance_threshold}")
        if self.visual_head_weight < 0:
            bad(f"visual_head_weight must be >= 0, got {self.visual_head_weight}")
        if self.relevance_agreement and self.visual_head_weight <= 0:
            bad("relevance_agreement needs the visual head: set visual_head_weight > 0 (e.g. 0.5)")
        if len(set(self.labels)) != len(self.labels):
            bad("labels contain duplicates; give each action class once")
        if self.audio_tagger == "ast" and self.ast_source is None and self.ast_config is None:
            bad("set ast_source (hub id or folder) or ast_config (an ASTConfig dict)")

    def _validate_backbones(self, bad: Callable[[str], None]) -> None:
        """The inputs and options each visual encoder and audio tagger can take."""
        if self.visual_encoder not in VISUAL_ENCODERS:
            bad(f"unknown visual_encoder {self.visual_encoder!r}; choose one of {list(VISUAL_ENCODERS)}")
        if self.audio_tagger not in AUDIO_TAGGERS:
            bad(f"unknown audio_tagger {self.audio_tagger!r}; choose one of {list(AUDIO_TAGGERS)}")
        if self.visual_encoder == "i3d":
            if self.motion != "none":
                bad(
                    f"visual_encoder 'i3d' is RGB only: set motion to 'none' (or leave it out), not {self.motion!r}"
                )
            if self.video_init:
                bad(
                    "video_init loads ViT weights into the two-stream ViT; with visual_encoder 'i3d' start "
                    "from the kinetics400 folder instead (init.backbones_from=kinetics400)"
                )
        elif self.motion == "none":
            bad("the two-stream ViT needs a motion input: set motion to 'diff' or 'flow'")
        if self.audio_tagger == "yamnet":
            if self.ast_source is not None or self.ast_config is not None:
                bad("ast_source / ast_config describe an AST; remove them with audio_tagger 'yamnet'")
            if self.sample_rate != 16000 or self.num_mel_bins != YAMNET_MEL_BINS:
                bad(
                    f"YAMNet takes 16 kHz audio and {YAMNET_MEL_BINS} mel bins: set sample_rate=16000 and "
                    f"num_mel_bins={YAMNET_MEL_BINS} (or leave them out), not {self.sample_rate} / {self.num_mel_bins}"
                )
            if len(self.tagger_labels) > MAX_LABELS:
                bad(f"tagger_labels holds more than {MAX_LABELS} labels")
        elif self.tagger_labels:
            bad(
                "tagger_labels names YAMNet's outputs; the AST's labels are its ast_config id2label: remove it"
            )

    @property
    def audio_frontend(self) -> str:
        """What ``ClipPreprocessor`` makes of the audio: AST fbank or YAMNet patches."""
        return "yamnet" if self.audio_tagger == "yamnet" else "ast"

    @property
    def max_length(self) -> int:
        """AST input length in fbank frames (10 ms hop): 10.24 s -> 1024."""
        return int(round(self.audio_seconds * 100))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def for_size(cls, size: str, **overrides: Any) -> ModelConfig:
        """``ModelConfig.for_size("base", labels=[...])``, validated like ``from_dict``."""
        return cls.from_dict({"size": size, **overrides})

    def architecture(self) -> dict[str, Any]:
        """The shape-defining fields, for comparing a checkpoint with a model."""
        data = self.to_dict()
        return {k: data[k] for k in ARCHITECTURE_FIELDS}

    def fine_tuned(self, section: dict[str, Any], labels: Sequence[str], *, where: str) -> ModelConfig:
        """This (a model folder's) config for fine-tuning it with a recipe's ``model`` section.

        The folder fixes :data:`FOLDER_FIXED_FIELDS`; the section may change only the
        training options (gating, losses, ``ast_trainable``, ...), validated as usual.

        Raises:
            ConfigError: the section changes a fixed field (``where`` names the folder), or
                an option is out of range.
        """
        have = self.to_dict()
        clash = [k for k in section if k in FOLDER_FIXED_FIELDS and k in have and have[k] != section[k]]
        clash.sort(key=lambda k: (k != "size", k))  # the size says the most
        if clash:
            raise ConfigError(
                f"{where} fixes the architecture: it has {clash[0]}={have[clash[0]]!r}, the recipe says "
                f"{section[clash[0]]!r}"
                + (f" (and {clash[1:]} differ)" if clash[1:] else "")
                + f"; choose a recipe that matches the folder, or leave model.{clash[0]} out"
            )
        options = {k: v for k, v in section.items() if k not in FOLDER_FIXED_FIELDS}
        return ModelConfig.from_dict({**have, **options, "labels": list(labels)})
