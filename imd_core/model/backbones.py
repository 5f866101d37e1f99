"""The backbones an :class:`~imd_core.model.imd_model.IMDModel` is built on, and their real weights.

A plain ``if`` picks the class, no registry (docs/MODEL.md, "Backbones"). Every visual
encoder speaks ``forward(rgb, motion) -> tuple of (B, D_i)`` and every audio tagger speaks
``ASTBranch``'s interface, so the rest of the model and the training cache never ask which
one they got.
"""

from __future__ import annotations

import logging
import os

from torch import nn

from imd_core.errors import ConfigError
from imd_core.model.config import ModelConfig

logger = logging.getLogger(__name__)


def build_visual_encoder(config: ModelConfig) -> nn.Module:
    """The two-stream ViT (random init; ``video_init`` is loaded by the model) or I3D."""
    if config.visual_encoder == "i3d":
        from imd_core.model.i3d_encoder import I3DEncoder

        return I3DEncoder()
    from imd_core.model.video_transformer import TwoStreamVideoTransformer

    return TwoStreamVideoTransformer(
        num_frames=config.num_frames,
        image_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        st_depth=config.st_depth,
        st_dim=config.st_dim,
        st_heads=config.st_heads,
        qkv_bias=config.qkv_bias,
        drop_path_rate=config.drop_path_rate,
        patch_stem=config.patch_stem,
    )


def build_audio_tagger(config: ModelConfig, *, load_pretrained: bool) -> nn.Module:
    """The AST (from ``ast_source`` or ``ast_config``) or YAMNet (random init, 521 AudioSet labels).

    Raises:
        ConfigError: the AST's input length or mel bins differ from the config's.
    """
    if config.audio_tagger == "yamnet":
        from imd_core.model.yamnet_branch import YamNetBranch

        return YamNetBranch(config.tagger_labels or None, trainable=config.ast_trainable)
    from imd_core.model.ast_branch import ASTBranch

    if config.ast_source is not None and (load_pretrained or config.ast_config is None):
        ast = ASTBranch.from_pretrained(config.ast_source, trainable=config.ast_trainable)
    else:
        ast = ASTBranch.from_config(config.ast_config, trainable=config.ast_trainable)
    if ast.max_length != config.max_length or ast.num_mel_bins != config.num_mel_bins:
        raise ConfigError(
            f"the AST takes {ast.max_length} frames x {ast.num_mel_bins} mel bins but the config says "
            f"audio_seconds={config.audio_seconds} ({config.max_length} frames) x {config.num_mel_bins}; "
            f"set audio_seconds={ast.max_length / 100} and num_mel_bins={ast.num_mel_bins}"
        )
    return ast


def describe_tagger(config: ModelConfig, tagger: nn.Module) -> ModelConfig:
    """``config`` with the tagger's own description, so a saved folder needs no hub.

    The AST's full ``ast_config`` (architecture and ``id2label``); YAMNet's label names.
    """
    if config.audio_tagger == "yamnet":
        return config.replace(tagger_labels=tuple(tagger.labels))
    return config.replace(ast_config=tagger.config.to_diff_dict())


def load_pretrained_backbones(model: nn.Module, source: str | os.PathLike[str] = "kinetics400") -> list[str]:
    """Fills ``model``'s I3D and/or YAMNet with a pretrained folder's real weights.

    ``source``: ``kinetics400`` (built by ``imd pretrained build``), or any folder of that
    format (a fine-tuned one included). I3D's Kinetics-400 logits layer is left out (the
    IMD head classifies); YAMNet keeps its AudioSet classifier (its tags feed the SAVLD).

    Returns:
        What was filled: ``["visual_encoder", "audio_tagger"]`` or one of them.

    Raises:
        ConfigError: the folder is not a pretrained folder, the model has neither I3D nor
            YAMNet, or the folder's YAMNet labels differ from the model's.
    """
    from imd_core.model.weights import load_state_into
    from imd_core.pretrained.folder import is_pretrained_folder, load_pretrained
    from imd_core.resources import resolve_model_dir

    cfg: ModelConfig = model.config
    if cfg.visual_encoder != "i3d" and cfg.audio_tagger != "yamnet":
        raise ConfigError(
            f"{source} holds I3D and YAMNet weights, but the model uses neither: set model.visual_encoder=i3d "
            "and/or model.audio_tagger=yamnet, or leave init.backbones_from out"
        )
    folder = resolve_model_dir(source)
    if not folder.is_dir():
        raise ConfigError(
            f"backbone folder {folder} does not exist; give kinetics400 (imd pretrained build) or a folder"
        )
    if not is_pretrained_folder(folder):
        raise ConfigError(
            f"{folder} is not a pretrained (I3D + YAMNet) folder; give kinetics400 or one built like it"
        )
    src = load_pretrained(folder, "cpu")  # header, shapes and finiteness checked there
    filled = []
    if cfg.visual_encoder == "i3d":
        state = {k: v for k, v in src.video.state_dict().items() if not k.startswith("Logits.")}
        load_state_into(model.video.net, state, source=f"{folder} (I3D)")
        filled.append("visual_encoder")
    if cfg.audio_tagger == "yamnet":
        if list(src.audio_labels) != list(model.audio_labels):
            raise ConfigError(
                f"{folder}'s YAMNet labels differ from the model's tagger_labels; leave model.tagger_labels out"
            )
        load_state_into(model.ast.net, src.tagger.state_dict(), source=f"{folder} (YAMNet)")
        filled.append("audio_tagger")
    logger.info("backbones from %s: %s", folder, ", ".join(filled))
    return filled
