"""One batch through the model: AST outputs from the cache, relevance targets, autocast.

A batch is what ``imd_core.data`` collates: ``rgb`` and ``motion`` ``(B,T,3,H,W)``
(``(B,V,T,3,H,W)`` for multi-view evaluation), ``fbank`` ``(B,F,128)``,
``audio_present`` ``(B,)`` bool, ``label`` ``(B,)``, ``cache_key`` (``B`` strings).
"""

from __future__ import annotations

from typing import Any

import torch

from imd_core.inference.device import autocast_context
from imd_core.train.ast_cache import ASTCache


def compile_train_model(
    model: torch.nn.Module, *, fullgraph: bool = True, mode: str | None = None
) -> torch.nn.Module:
    """``torch.compile`` of the whole training forward, loss included, as one graph.

    The model's ``forward`` computes the loss when ``labels`` are given, so compiling
    the module (not its submodules) puts the two visual streams, relevance, gating,
    fusion, head and losses into one graph; AOTAutograd then compiles the backward as
    one graph too. Only the AST cache lookup (Python) stays outside (see
    :func:`forward_batch`). ``fullgraph=True`` turns any graph break into an error
    instead of a silent slow-down; under DDP pass ``fullgraph=False``: dynamo's DDP
    optimiser splits the graph at gradient-bucket boundaries on purpose.
    ``dynamic=False``: training batches have one shape (``drop_last``), so every
    graph is specialised; a new shape recompiles instead of going symbolic.
    ``mode``: ``torch.compile``'s (None = default; benchmarks try others).
    """
    return torch.compile(model, fullgraph=fullgraph, dynamic=False, mode=mode)


def ast_branch(model: torch.nn.Module) -> torch.nn.Module:
    """The model's AST branch (``forward(fbank (B,F,128)) -> (embedding, logits)``)."""
    for name in ("ast", "audio_branch", "ast_branch"):
        branch = getattr(model, name, None)
        if isinstance(branch, torch.nn.Module):
            return branch
    raise AttributeError("IMDModel has no AST branch attribute (expected .ast)")


def audio_features(
    model: torch.nn.Module,
    fbank: torch.Tensor,
    keys: list[str] | None,
    cache: ASTCache | None,
    device: torch.device,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen AST's ``(embedding (B,D_a), logits (B,A))``, cached per clip and window.

    Only the clips missing from the cache go through the AST. Without a cache (or
    without keys) every clip does. Runs without gradients: only for a frozen AST.
    """
    branch = ast_branch(model)
    if cache is None or keys is None:
        with torch.no_grad(), autocast_context(device, precision):
            emb, logits = branch(fbank.to(device, non_blocking=True))
        return emb.float(), logits.float()
    missing, found = cache.lookup(keys)
    if missing:
        sub = fbank[missing].to(device, non_blocking=True)
        with torch.no_grad(), autocast_context(device, precision):
            emb, logits = branch(sub)
        for j, i in enumerate(missing):
            cache.put(keys[i], emb[j], logits[j])
            found[i] = (emb[j].detach().float().cpu(), logits[j].detach().float().cpu())
    emb = torch.stack([f[0] for f in found]).to(device, non_blocking=True)
    logits = torch.stack([f[1] for f in found]).to(device, non_blocking=True)
    return emb, logits


def forward_batch(
    model: torch.nn.Module,
    core: torch.nn.Module,
    batch: dict[str, Any],
    *,
    device: torch.device,
    precision: str,
    cache: ASTCache | None,
    ast_trainable: bool,
    with_labels: bool = True,
) -> Any:
    """Runs ``model`` (maybe DDP/compiled) on a ``(B,T,...)`` batch.

    Args:
        model: what is called (a DDP or compiled wrapper, or ``core``).
        core: the bare ``IMDModel`` (for its AST branch and SAVLD).

    Returns:
        The ``IMDOutput`` (with ``loss`` when ``with_labels``); the relevance targets are
        the SAVLD IoU the model computes from the (cached) AST logits.
    """
    rgb = batch["rgb"].to(device, non_blocking=True)
    motion = batch["motion"].to(device, non_blocking=True)
    present = batch["audio_present"].to(device, non_blocking=True).bool()
    labels = batch["label"].to(device, non_blocking=True).long() if with_labels else None
    kwargs: dict[str, Any] = {"audio_present": present}
    if ast_trainable:
        kwargs["fbank"] = batch["fbank"].to(device, non_blocking=True)
    else:
        emb, logits = audio_features(
            core, batch["fbank"], list(batch.get("cache_key") or []) or None, cache, device, precision
        )
        kwargs["audio_embedding"] = emb
        kwargs["audio_logits"] = logits
    if labels is not None:
        kwargs["labels"] = labels
    with autocast_context(device, precision):
        return model(rgb, motion, **kwargs)
