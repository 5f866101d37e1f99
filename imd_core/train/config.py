"""The training configuration: typed, versioned, strict.

A run is one :class:`TrainConfig` (saved resolved as ``config.json``); shipped recipes
live in ``imd_core/configs/<name>.json``. Unknown keys and bad choices are refused with
the valid ones listed. The ``model`` section stays a mapping here, validated by
``ModelConfig.from_dict``, the single source of truth for its fields.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

from imd_core.config_base import FrozenConfig, parse_overrides
from imd_core.errors import ConfigError

CONFIG_VERSION = 1
SHIPPED_CONFIGS: tuple[str, ...] = ("tiny", "small", "base", "large", "demo")
# seconds; far beyond a healthy clip (~0.1-1 s of decoding), short enough that a decode
# stuck inside FFmpeg costs minutes, not a night (data.loader_timeout, imd eval)
DEFAULT_LOADER_TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True)
class OptimConfig(FrozenConfig):
    """Optimiser. ``lr`` is the peak learning rate reached after warm-up."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # sgd only
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ast_lr_scale: float = 0.1  # AST learning rate = lr * this, when the AST is fine-tuned


@dataclasses.dataclass(frozen=True)
class ScheduleConfig(FrozenConfig):
    """Learning-rate schedule over optimiser steps: linear warm-up, then decay."""

    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_epochs: float = 1.0
    warmup_steps: int = -1  # >= 0 overrides warmup_epochs
    min_lr_ratio: float = 0.01  # final lr = lr * min_lr_ratio (cosine, linear)


@dataclasses.dataclass(frozen=True)
class AugmentConfig(FrozenConfig):
    """Training-time augmentation (evaluation never augments)."""

    cross_modal_p: float = 0.0  # intra-class cross-modality audio swap probability
    flip: bool = True  # random horizontal flip
    train_scale: tuple[float, float] = (1.0, 1.15)  # random short side / image_size before the random crop


@dataclasses.dataclass(frozen=True)
class InitConfig(FrozenConfig):
    """Where the weights start from.

    ``from_model`` fine-tunes an existing model folder (``"demo"`` means the embedded
    demo model); the ``model`` section then only changes trainable options, and the
    architecture comes from that folder. Otherwise the model is built from backbones:
    the AST, the timm ViT and the SAVLD text encoder named in the ``model`` section.
    ``savld`` names a SAVLD JSON to use instead of building one from the labels with
    ``text_encoder``, keeping each class's ``savld_k`` nearest audio labels.
    ``backbones_from`` (``"kinetics400"`` or a folder of its format) starts a model
    built from the ``model`` section with that folder's real weights in its I3D
    (``visual_encoder="i3d"``) and YAMNet (``audio_tagger="yamnet"``).
    """

    from_model: str | None = None
    backbones_from: str | None = None
    savld: str | None = None
    text_encoder: str | None = None  # SAVLD encoder (hub id or folder); None: all-MiniLM-L6-v2
    savld_k: int = 10  # audio labels per class in a SAVLD built here (imd savld build --k; its default)


@dataclasses.dataclass(frozen=True)
class DataConfig(FrozenConfig):
    """Data loading options (see imd_core/train/frame_cache.py and docs/TRAINING.md).

    ``frame_cache``: folder of the decoded-frame cache, ``"auto"`` = ``RUN_DIR/frame_cache``,
    None = off. With it, each clip is decoded once; training then samples each
    segment's frame among ``frame_grid`` fixed candidates and applies the random scale
    by resizing (the only differences from training without it).
    """

    frame_cache: str | None = None
    frame_grid: int = 4
    # seconds to open each file and read its first packets in a decode sandbox before
    # epoch 1; files that time out or fail are left out (imd_core/train/probe.py). 0: off
    probe_timeout: float = 10.0
    # seconds one clip's decode may keep the loader waiting (training and validation); past
    # them its sandbox stops it, the clip is skipped and the file excluded from then on
    loader_timeout: float = DEFAULT_LOADER_TIMEOUT


@dataclasses.dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    """Everything that defines a training run (except the data and the run folder)."""

    version: int = CONFIG_VERSION
    name: str = "custom"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    init: InitConfig = dataclasses.field(default_factory=InitConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    epochs: int = 10
    batch_size: int = 8  # global batch per optimiser micro-step (split across DDP ranks)
    grad_accum_steps: int = 1
    seed: int = 0
    early_stopping_patience: int = 5  # epochs without improvement; 0 disables
    early_stopping_metric: Literal["val_top1", "val_loss"] = "val_top1"
    checkpoint_every_steps: int = 0  # also save last/ every N optimiser steps; 0 = per epoch
    log_every_steps: int = 10
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False
    num_workers: int = 2
    val_fraction: float = 0.2  # share of clips without a split (manifest/folders) used for validation
    clip_seconds: float = 0.0  # >0: longest window per clip (random in training, central in validation)
    ast_cache_dir: str | None = None  # default: RUN_DIR/ast_cache
    max_steps_per_epoch: int = 0  # 0 = full epoch; >0 caps it (smoke runs)

    def __post_init__(self) -> None:
        if self.version != CONFIG_VERSION:
            raise ConfigError(
                f"config version {self.version} is not supported; this imd reads version {CONFIG_VERSION}"
            )
        checks = [
            (1 <= self.epochs <= 100_000, "epochs must be in [1, 100000]"),
            (1 <= self.batch_size <= 65_536, "batch_size must be in [1, 65536]"),
            (self.grad_accum_steps >= 1, "grad_accum_steps must be >= 1"),
            (self.early_stopping_patience >= 0, "early_stopping_patience must be >= 0"),
            (self.checkpoint_every_steps >= 0, "checkpoint_every_steps must be >= 0"),
            (self.log_every_steps >= 1, "log_every_steps must be >= 1"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.clip_seconds >= 0, "clip_seconds must be >= 0 (0 = whole clip)"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (0 < self.optim.lr < float("inf"), "optim.lr must be a finite number > 0"),
            (0.0 <= self.augment.cross_modal_p <= 1.0, "augment.cross_modal_p must be in [0, 1]"),
            (self.data.frame_grid >= 1, "data.frame_grid must be >= 1"),
            (self.init.savld_k >= 1, "init.savld_k must be >= 1 (audio labels per class in a built SAVLD)"),
            (self.data.probe_timeout >= 0, "data.probe_timeout must be >= 0 seconds (0 disables the probe)"),
            (
                0 < self.data.loader_timeout < float("inf"),
                "data.loader_timeout must be a finite number of seconds > 0 (the longest one clip may take to decode)",
            ),
            (
                not (self.init.from_model and self.init.backbones_from),
                "init.from_model and init.backbones_from both start the weights: give one",
            ),
            (
                not (self.data.frame_cache and self.clip_seconds > 0),
                "data.frame_cache caches whole clips (or manifest windows): set clip_seconds=0 or turn it off",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"TrainConfig: {message}")


def configs_dir() -> Path:
    """The folder of shipped recipes (``tiny.json``, ``base.json``, ...)."""
    return Path(__file__).resolve().parent.parent / "configs"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; give a shipped name {list(SHIPPED_CONFIGS)} or a JSON file"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix the file"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def validate_model_section(model: dict[str, Any]) -> dict[str, Any]:
    """Validates the ``model`` section with ``ModelConfig`` and returns it in full.

    Raises:
        ConfigError: unknown key or bad value (ModelConfig lists the valid ones).
    """
    from imd_core.model.config import ModelConfig

    return ModelConfig.from_dict(dict(model), where="model").to_dict()


def load_train_config(
    name_or_file: str | Path, overrides: list[str] | dict[str, str] | None = None
) -> TrainConfig:
    """Loads a shipped recipe by name, or a JSON file, then applies ``--set`` overrides.

    Args:
        name_or_file: ``tiny``/``small``/``base``/``large``/``demo`` or a path to JSON.
        overrides: ``["optim.lr=0.001", "model.num_frames=16"]`` or a dict of the same.

    Returns:
        The validated config; its ``model`` section holds every ModelConfig field.
    """
    text = str(name_or_file)
    path = Path(text)
    if text in SHIPPED_CONFIGS and not path.exists():
        path = configs_dir() / f"{text}.json"
    elif not path.suffix and not path.exists():
        raise ConfigError(f"unknown config {text!r}; give one of {list(SHIPPED_CONFIGS)} or a JSON file")
    data = _read_json(path)
    pairs = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    model_pairs = {k[len("model.") :]: v for k, v in pairs.items() if k.startswith("model.")}
    other_pairs = {k: v for k, v in pairs.items() if not k.startswith("model.")}
    # The model section is partial in files (a size preset fills the rest), so its
    # overrides are merged before ModelConfig expands it.
    model = dict(data.get("model") or {})
    for key, raw in model_pairs.items():
        if "." in key:
            raise ConfigError(
                f"--set model.{key}: the model section has no sub-sections; use model.<field>=value"
            )
        try:
            model[key] = json.loads(raw)
        except json.JSONDecodeError:
            model[key] = raw
    data["model"] = model
    cfg = TrainConfig.from_dict(data, where=path.name)
    if other_pairs:
        cfg = cfg.with_overrides(other_pairs)
    if cfg.init.from_model:
        # The model folder fixes the architecture: keep the section as given (options
        # only; build_model refuses architecture values that differ from the folder's).
        from imd_core.model.config import ModelConfig

        unknown = sorted(set(cfg.model) - set(ModelConfig.field_names()))
        if unknown:
            raise ConfigError(f"model: unknown key(s) {unknown}; valid keys are {ModelConfig.field_names()}")
        return cfg
    return cfg.replace(model=validate_model_section(cfg.model))
