"""Checkpoint folders (save/load without pickles) and timm ViT weight import.

A model folder holds:

* ``config.json``: ``{"format": "imd-studio-model", "format_version": 1, "model": <ModelConfig>,
  "labels": [...], "audio_labels": [...], "versions": {...}}``. The ``model`` section
  includes the full AST ``ast_config`` (or YAMNet's ``tagger_labels``) so the folder is
  self-contained;
* ``model.safetensors``: every weight (video streams or I3D, AST or YAMNet, relevance
  net, fusion, head);
* ``preprocessor_config.json``: ``ASTFeatureExtractor`` fields (YAMNet: the audio
  frontend's name) + the video input fields;
* ``savld.json``: the label dictionary (optional but written whenever the model has one).

Loading reads only JSON and safetensors; a pickle is never unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imd_core.errors import CheckpointError, ConfigError, ImdError
from imd_core.model.audio_features import AudioFeatureConfig
from imd_core.model.config import ModelConfig
from imd_core.model.savld import Savld

logger = logging.getLogger(__name__)

FORMAT = "imd-studio-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSOR_NAME = "preprocessor_config.json"
SAVLD_NAME = "savld.json"
_PICKLE_NAMES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt", "model.pkl")


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


def save_model(model: nn.Module, folder: str | os.PathLike, *, savld: Savld | None = None) -> Path:
    """Writes ``model`` (an :class:`IMDModel`) to ``folder`` (created if needed).

    Args:
        model: the model; its ``config`` and ``savld`` are saved with it.
        folder: destination; existing files of the same names are replaced atomically.
        savld: the dictionary to store; default: the model's own.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg: ModelConfig = model.config
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
    savld = savld or getattr(model, "savld", None)
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


def _weights_path(folder: Path) -> Path:
    """``folder/model.safetensors`` once its first bytes say safetensors (pickles refused)."""
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        pickles = [n for n in _PICKLE_NAMES if (folder / n).exists()]
        hint = f" (found {pickles[0]}, a pickle: IMD Studio never loads pickles)" if pickles else ""
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}{hint}; re-save the model with save_model")
    with open(path, "rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    # safetensors: an 8-byte little-endian header length, then the JSON header
    is_safetensors = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8
    if not is_safetensors:
        if head[:1] == b"\x80" or head[:2] == b"PK":  # pickle protocol 2+ / torch.save zip archive
            raise CheckpointError(
                f"{path} is a pickle, not safetensors; refusing to unpickle it (re-save the model with save_model)"
            )
        raise CheckpointError(f"{path} is not a safetensors file; re-save the model with save_model")
    return path


def read_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Reads ``model.safetensors``; refuses pickles (it never unpickles anything)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _weights_path(Path(folder))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); re-save the model") from None


# safetensors dtype names of the float types a model's weights may be stored in
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_DTYPE_NAMES = {torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}


def read_weights_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of a safetensors file, read from its header alone.

    No tensor is read, so a file that claims terabytes costs nothing to inspect.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            out = {}
            for key in fh.keys():
                part = fh.get_slice(key)
                out[key] = (str(part.get_dtype()), tuple(int(n) for n in part.get_shape()))
            return out
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); re-save the model") from None


def expected_tensors(build: Callable[[], nn.Module]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of the state dict ``build()`` makes, built on the meta device.

    Meta tensors have shapes but no storage, so this allocates nothing however large
    the architecture.
    """
    with torch.device("meta"):
        model = build()
    return {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}


def check_weights_header(
    path: str | os.PathLike, expected: dict[str, tuple[torch.dtype, tuple[int, ...]]]
) -> None:
    """Refuses a weights file whose header does not hold exactly the tensors ``expected``.

    Every expected tensor must be present with its shape; float tensors must be stored
    as a float type (F16, BF16, F32, F64: int32 "weights" are refused), others as their
    own type. Runs before any tensor is read or any model is allocated.

    Raises:
        CheckpointError: one line naming the first offending tensor and what to do.
    """
    header = read_weights_header(path)
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    shapes = [k for k in expected if k in header and header[k][1] != expected[k][1]]
    if missing or unexpected or shapes:
        what = []
        if missing:
            what.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            what.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            what.append(f"{len(shapes)} of other shape (e.g. {k}: model {expected[k][1]} vs {header[k][1]})")
        raise CheckpointError(f"weights in {path} do not fit the model: {'; '.join(what)}")
    for key, (dtype, _) in expected.items():
        stored = header[key][0]
        if dtype.is_floating_point and stored not in _FLOAT_DTYPES:
            raise CheckpointError(
                f"weights in {path}: {key} is stored as {stored}, not a float type ({', '.join(_FLOAT_DTYPES)})"
            )
        if not dtype.is_floating_point and stored != _DTYPE_NAMES.get(dtype, stored):
            raise CheckpointError(
                f"weights in {path}: {key} is stored as {stored}, the model keeps it as {_DTYPE_NAMES[dtype]}"
            )


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuses weights that hold NaN or infinity (a diverged run), naming the first such tensor."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"weights in {source}: {key} holds NaN or infinite values (a diverged or damaged model); "
                "use an earlier checkpoint or retrain"
            )


def verify_weights_file(
    path: str | os.PathLike,
    build: Callable[[], nn.Module],
    *,
    hint: str = "re-save or rebuild the model folder",
) -> None:
    """:func:`check_weights_header` of ``path`` against a meta-device ``build()``.

    For any model folder kind: call it before the weights are read or the model built.

    Raises:
        CheckpointError: the header's first misfit, then ``hint`` (what to do).
    """
    path = Path(path)
    if path.name == WEIGHTS_NAME:  # a folder's weights: refuse a missing file or a pickle first
        path = _weights_path(path.parent)
    try:
        check_weights_header(path, expected_tensors(build))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {hint}") from None


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


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Loads ``state`` strictly; a missing/unexpected/misshaped key raises CheckpointError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        what = []
        if missing:
            what.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            what.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            what.append(
                f"{len(shapes)} of other shape (e.g. {k}: model {tuple(own[k].shape)} vs {tuple(state[k].shape)})"
            )
        raise CheckpointError(f"weights in {source} do not fit the model: {'; '.join(what)}")
    model.load_state_dict(state, strict=True)


def load_model(
    folder: str | os.PathLike, device: str | torch.device = "cpu", *, expect: ModelConfig | None = None
) -> nn.Module:
    """Loads a model folder written by :func:`save_model` (eval mode, on ``device``).

    Args:
        folder: the model folder.
        device: where to put the weights.
        expect: if given, the checkpoint's architecture must equal this one.

    Raises:
        CheckpointError: missing/unsafe/corrupt files or an architecture mismatch (the
            message names both configurations).
    """
    from imd_core.model.imd_model import IMDModel
    from imd_core.pretrained.folder import is_pretrained_folder, load_pretrained
    from imd_core.resources import resolve_model_dir

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
    path = _weights_path(folder)
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


# ---------------------------------------------------------------------------- timm ViT import
_HF_VIT_PREFIX = re.compile(r"^(vit\.|model\.)?")


def hf_vit_to_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``ViTModel`` state dict (``google/vit-base-patch16-224-in21k``) in timm's names.

    Reads both of transformers' layouts: the one its files hold (``encoder.layer.N.attention
    .attention.query``) and the one transformers 5 builds in memory (``layers.N.attention.q_proj``).
    Query, key and value are concatenated into timm's ``qkv``; everything else is renamed.
    A state dict with neither layout is returned unchanged.
    """
    hf = {_HF_VIT_PREFIX.sub("", k): v for k, v in state_dict.items()}
    layout = next((p for p in _HF_VIT_BLOCKS if any(re.match(p, k) for k in hf)), None)
    if layout is None:
        return state_dict
    names = _HF_VIT_BLOCKS[layout]
    out: dict[str, torch.Tensor] = {_HF_VIT_RENAMES[k]: v for k, v in hf.items() if k in _HF_VIT_RENAMES}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf.items():
        m = re.match(layout + r"(\d+)\.(.+)\.(weight|bias)$", key)
        if m is None:
            continue  # embeddings (renamed above), pooler, classifier: nothing a stream has
        i, name, kind = m.groups()
        timm_name = names.get(name)
        if timm_name in ("q", "k", "v"):
            qkv.setdefault((i, kind), {})[timm_name] = value
        elif timm_name is not None:
            out[f"blocks.{i}.{timm_name}.{kind}"] = value
    for (i, kind), parts in qkv.items():
        if len(parts) == 3:
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


_HF_VIT_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_VIT_NORMS = {"layernorm_before": "norm1", "layernorm_after": "norm2"}
# block prefix -> {transformers name inside a block: timm name ("q"/"k"/"v" go into qkv)}
_HF_VIT_BLOCKS = {
    r"encoder\.layer\.": _HF_VIT_NORMS | {
        "attention.attention.query": "q", "attention.attention.key": "k", "attention.attention.value": "v",
        "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
    },
    r"layers\.": _HF_VIT_NORMS | {
        "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v",
        "attention.o_proj": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    },
}  # fmt: skip


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapts a timm ``VisionTransformer`` state dict to a :class:`VisualStream`.

    Strips ``module.`` / ``_orig_mod.`` prefixes (DDP, torch.compile), drops the
    classifier head and keys the stream lacks (extra blocks, ``fc_norm``), resamples
    ``pos_embed`` to the stream's patch grid and ``patch_embed.proj.weight`` to its patch
    size, and keeps the first hidden units of a wider MLP (ViT-B weights into IMD-small's
    MLP ratio 3). Pure: returns a new dict, changes nothing in place.

    Raises:
        CheckpointError: a kept tensor has another shape (e.g. a 1024-wide ViT-L into a
            768-wide stream).
    """
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    state_dict = state_dict.get("model", state_dict.get("state_dict", state_dict))
    state_dict = hf_vit_to_timm(state_dict)  # the transformers layout, if that is what it is
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    dropped = []
    for key, value in state_dict.items():
        k = re.sub(r"^(module\.|_orig_mod\.)+", "", key)
        if k not in own:
            dropped.append(k)
            continue
        if k == "pos_embed" and value.shape != own[k].shape:
            value = resample_abs_pos_embed(value, new_size=list(model.grid_size), num_prefix_tokens=1)
        elif k == "patch_embed.proj.weight" and value.shape[-2:] != own[k].shape[-2:]:
            value = resample_patch_embed(value, list(own[k].shape[-2:]))
        elif ".mlp.fc" in k and value.shape != own[k].shape:
            value = _select_mlp_units(k, value, own[k].shape)
        if value.shape != own[k].shape:
            raise CheckpointError(
                f"ViT weight {k} has shape {tuple(value.shape)} but the stream needs {tuple(own[k].shape)}; "
                "use ViT weights of the same width and MLP ratio"
            )
        out[k] = value.to(own[k].dtype)
    if dropped:
        logger.info("ViT import: ignored %d keys (e.g. %s)", len(dropped), dropped[0])
    return out


def _select_mlp_units(key: str, value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Keeps the first hidden units of a wider MLP (weight selection, Xu et al. 2023).

    Lets IMD-small (MLP ratio 3, 2,304 hidden units) start from ViT-B weights (3,072):
    ``fc1`` keeps its first rows, ``fc2`` its first columns. Other mismatches are left
    for the caller to refuse.
    """
    if key.endswith("fc1.weight") or key.endswith("fc1.bias"):
        if value.shape[0] > shape[0] and value.shape[1:] == shape[1:]:
            return value[: shape[0]]
    elif key.endswith("fc2.weight") and value.ndim == 2:
        if value.shape[1] > shape[1] and value.shape[0] == shape[0]:
            return value[:, : shape[1]]
    return value


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix in (".pth", ".pt", ".bin"):
        try:  # weights_only: tensors and plain containers only, no code execution
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling refusal becomes one clear error
            raise CheckpointError(
                f"cannot read ViT weights {path} with weights_only=True ({type(exc).__name__}); "
                "convert them to .safetensors"
            ) from None
    raise CheckpointError(f"unsupported ViT weight file {path}; use .safetensors (or .pth/.bin tensors)")


def load_vit_weights(stream: nn.Module, source: str) -> None:
    """Initialises a :class:`VisualStream` from timm ViT weights.

    Args:
        stream: the stream to fill.
        source: a ``.safetensors``/``.pth`` file, a folder holding ``model.safetensors``
            (or ``pytorch_model.bin``), or a timm model name / hub id
            (``vit_base_patch16_224.augreg_in21k``, ``hf-hub:timm/...``), which timm downloads.
    """
    path = Path(source)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            if (path / name).is_file():
                state = _read_weight_file(path / name)
                break
        else:
            raise CheckpointError(
                f"{path} holds no model.safetensors or pytorch_model.bin; pass a ViT weight file"
            )
    elif path.is_file():
        state = _read_weight_file(path)
    elif path.suffix in (".safetensors", ".pth", ".pt", ".bin") or source.startswith(("/", ".", "~")):
        raise CheckpointError(f"ViT weight file {source} does not exist")
    else:
        import timm

        try:
            vit = timm.create_model(source, pretrained=True, num_classes=0)
        except Exception as exc:  # noqa: BLE001 - timm raises many kinds (RuntimeError, OSError, HTTP errors)
            raise CheckpointError(
                f"cannot load timm ViT {source!r} ({type(exc).__name__}); pass a local weight file"
            ) from None
        state = vit.state_dict()
    filtered = checkpoint_filter_fn(state, stream)
    if not filtered:  # nothing matched: initialising "from" it would silently train from scratch
        raise CheckpointError(
            f"{source}: none of its {len(state)} tensors is a ViT weight this stream has (e.g. "
            f"{next(iter(state), '?')}); pass timm ViT weights or a transformers ViTModel folder"
        )
    missing = [k for k in stream.state_dict() if k not in filtered]
    stream.load_state_dict(filtered, strict=False)
    logger.info(
        "initialised a visual stream from %s (%d tensors; %d left at init, e.g. %s)",
        source,
        len(filtered),
        len(missing),
        missing[:1],
    )
