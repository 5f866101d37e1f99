"""timm ViT weights into a :class:`~imd_core.model.video_transformer.VisualStream`.

Reads timm's layout and both of transformers' ViT layouts, resamples the position
embedding and patch size to the stream's, and refuses tensors of another width.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from imd_core.errors import CheckpointError

logger = logging.getLogger(__name__)

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
