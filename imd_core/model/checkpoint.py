"""Checkpoint folders: save and load an :class:`IMDModel` without pickles.

A model folder holds ``config.json`` (self-contained: the full model config, labels and
versions), ``model.safetensors``, ``preprocessor_config.json`` and ``savld.json``
(docs/MODEL.md). Loading reads only JSON and safetensors; a pickle is never unpickled.
:func:`load_model` also loads pretrained (I3D + YAMNet) folders.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from imd_core.errors import CheckpointError, ConfigError, ImdError
from imd_core.model.audio_features import AudioFeatureConfig
from imd_core.model.config import ModelConfig
from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld
from imd_core.model.weights import (
    WEIGHTS_NAME,
    check_finite,
    check_weights_header,
    expected_tensors,
    load_state_into,
    read_state_dict,
    weights_path,
)
from imd_core.pretrained.folder import is_pretrained_folder, load_pretrained
from imd_core.pretrained.kinetics400 import PretrainedIMD
from imd_core.resources import resolve_model_dir

logger = logging.getLogger(__name__)

FORMAT = "imd-studio-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"
SAVLD_NAME = "savld.json"


def _versions() -> dict[str, str]:
    import timm
    import transformers

    import imd_core

    return {
        "imd_studio": imd_core.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "timm": timm.__version__,
    }


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def preprocessor_dict(config: ModelConfig) -> dict[str, Any]:
    """The ``preprocessor_config.json`` body: AST feature fields + video input fields."""
    if config.audio_frontend == "yamnet":  # log-mel patches: no ASTFeatureExtractor describes them
        data: dict[str, Any] = {"audio_frontend": "yamnet", "sample_rate": config.sample_rate,
                                "num_mel_bins": config.num_mel_bins}  # fmt: skip
    else:
        data = AudioFeatureConfig.from_model_config(config).to_hf_dict()
    data.update(
        {
            "num_frames": config.num_frames,
            "image_size": config.image_size,
            "motion": config.motion,
            "image_mean": list(config.image_mean),
            "image_std": list(config.image_std),
            "audio_seconds": config.audio_seconds,
        }
    )
    return data


def save_model(model: IMDModel, folder: str | os.PathLike, *, savld: Savld | None = None) -> Path:
    """Writes ``model`` to ``folder`` (created if needed).

    Args:
        model: the model; its ``config`` and ``savld`` are saved with it.
        folder: destination; existing files of the same names are replaced atomically.
        savld: the dictionary to store; default: the model's own.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / WEIGHTS_NAME)
    _write_json(
        folder / CONFIG_NAME,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": cfg.to_dict(),
            "labels": list(cfg.labels),
            "audio_labels": model.audio_labels,
            "versions": _versions(),
        },
    )
    _write_json(folder / PREPROCESSOR_NAME, preprocessor_dict(cfg))
    savld = savld or model.savld
    if savld is not None:
        savld.save(folder / SAVLD_NAME)
    return folder


def read_config(folder: str | os.PathLike) -> ModelConfig:
    """Reads and validates ``config.json`` of a model folder.

    Raises:
        CheckpointError: missing folder/file, foreign format or invalid contents.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"model folder {folder} does not exist; pass a folder written by save_model or `imd train`"
        )
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}; it is not an IMD Studio model folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); re-save the model") from None
    except RecursionError:
        raise CheckpointError(
            f"{path} is nested too deeply to be a model config; re-save the model"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an IMD Studio model config (format != {FORMAT!r})")
    version = data.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(
            f"{path}: format_version must be a whole number, got {version!r}; re-save the model"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {version}; upgrade IMD Studio to load it")
    try:
        return ModelConfig.from_dict(data["model"])
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: the model config is nested too deeply; re-save the model") from None


def describe_mismatch(expected: ModelConfig, found: ModelConfig) -> str:
    """One line naming both architectures and the fields that differ."""
    a, b = expected.architecture(), found.architecture()
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    parts = ", ".join(f"{k}: model {v[0]!r} vs checkpoint {v[1]!r}" for k, v in diff.items() if k != "labels")
    if "labels" in diff:
        parts = (
            parts + ", " if parts else ""
        ) + f"labels: model {len(a['labels'])} vs checkpoint {len(b['labels'])} classes"
    return (
        f"architecture mismatch: model is size={expected.size} ({expected.embed_dim}x{expected.depth}+{expected.st_depth}st), "
        f"checkpoint is size={found.size} ({found.embed_dim}x{found.depth}+{found.st_depth}st); {parts}"
    )


def load_model(
    folder: str | os.PathLike, device: str | torch.device = "cpu", *, expect: ModelConfig | None = None
) -> IMDModel | PretrainedIMD:
    """Loads a model folder written by :func:`save_model`, or a pretrained one (eval mode, on ``device``).

    Args:
        folder: the model folder.
        device: where to put the weights.
        expect: if given, the checkpoint's architecture must equal this one.

    Raises:
        CheckpointError: missing/unsafe/corrupt files or an architecture mismatch (the
            message names both configurations).
    """
    folder = resolve_model_dir(folder)
    try:
        pretrained = is_pretrained_folder(folder)
    except RecursionError:  # json.loads on a config.json nested thousands deep
        raise CheckpointError(
            f"{folder / CONFIG_NAME} is nested too deeply to be a model config; re-save the model"
        ) from None
    if pretrained:
        if expect is not None:
            raise CheckpointError(
                f"{folder} is a pretrained (I3D + YAMNet) model, not a {expect.size} IMD model"
            )
        return load_pretrained(folder, device)
    cfg = read_config(folder)
    if cfg.audio_tagger == "ast" and cfg.ast_config is None:
        # without it IMDModel would call transformers' from_pretrained on ast_source: a hub
        # download or a folder elsewhere. A saved folder is self-contained or refused.
        raise CheckpointError(
            f"{folder / CONFIG_NAME} has no ast_config (it names ast_source {cfg.ast_source!r}); a model "
            "folder must be self-contained and is never completed from a hub or another folder; re-save it"
        )
    if expect is not None and expect.architecture() != cfg.architecture():
        raise CheckpointError(describe_mismatch(expect, cfg))
    # Shapes and dtypes from the safetensors header against a meta-device build (no
    # storage): a folder whose config and weights disagree is refused before allocating.
    path = weights_path(folder)
    described = f"config.json says size={cfg.size}, {cfg.embed_dim} wide, depth {cfg.depth}+{cfg.st_depth}"
    try:
        check_weights_header(path, expected_tensors(lambda: IMDModel(cfg, load_pretrained=False)))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} ({described}); the folder is inconsistent, re-save it") from None
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        if isinstance(exc, ImdError):
            raise
        raise CheckpointError(
            f"{folder / CONFIG_NAME}: no model can be built from it ({type(exc).__name__}: {exc}); re-save the model"
        ) from None
    savld = Savld.load(folder / SAVLD_NAME) if (folder / SAVLD_NAME).is_file() else None
    state = read_state_dict(folder)
    check_finite(state, str(path))
    model = IMDModel(cfg, load_pretrained=False)
    try:
        load_state_into(model, state, source=str(folder / WEIGHTS_NAME))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} ({described}); the folder is inconsistent, re-save it") from None
    if savld is not None:
        model.set_savld(savld)
    return model.to(device).eval()
