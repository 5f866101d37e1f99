"""Evaluation: one pass over a loader, multi-view averaging, every metric.

Shared by per-epoch validation and ``imd eval``. Multi-view batches average the class and
relevance logits over the views (the AST runs once per clip). Under DDP the per-batch
results are gathered and fed in single-process order, so every rank computes the same
numbers as one process.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from imd_core.distributed import DistInfo
from imd_core.inference.device import autocast_context
from imd_core.train.ast_cache import ASTCache
from imd_core.train.data_order import global_batch_index
from imd_core.train.metrics import MetricAccumulator
from imd_core.train.steps import audio_features

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: Any,
    *,
    device: torch.device,
    precision: str = "auto",
    cache: ASTCache | None = None,
    max_batches: int = 0,
    dist: DistInfo | None = None,
) -> dict[str, Any]:
    """Evaluates the bare ``IMDModel`` on every batch of ``loader``.

    Relevance accuracy compares the relevance network's decision (p >= the model's
    ``relevance_threshold``, as its gate decides) with the SAVLD IoU target (relevant iff
    IoU > ``relevance_tau``) of clips with audio.

    Args:
        dist: this process's DDP place; with ``world_size > 1`` the loader must hold
            this rank's batches of an ``EvalShardSampler`` (``make_eval_loader(...,
            rank=, world_size=)``), and every rank must call this (collective).

    Returns:
        The mapping of :meth:`MetricAccumulator.compute` (top1, top5,
        mean_class_accuracy, per_class_accuracy, confusion_matrix, loss,
        relevance_accuracy, audio_drop_rate, accuracy_audio_kept/dropped, ...), plus
        ``skipped`` (unusable clips) and ``skipped_items`` ``[(dataset index, reason)]``.
    """
    cfg = model.config
    was_training = model.training
    model.eval()
    from imd_core.pretrained.kinetics400 import PretrainedIMD

    # kinetics400-family models take YAMNet patches in "fbank" and decide relevance
    # themselves (a rule, or a learned net on frozen features); relevant iff IoU > 0
    pretrained = isinstance(model, PretrainedIMD)
    # (kinetics400-family models pass their 0/1 decision as the "probability")
    acc = MetricAccumulator(len(cfg.labels), tau=0.0 if pretrained else float(cfg.relevance_tau),
                            threshold=0.5 if pretrained else float(cfg.relevance_threshold))  # fmt: skip
    skipped: dict[int, str] = {}
    sharded = dist is not None and dist.enabled
    records: list[tuple[int, tuple]] = []  # (single-process batch number, update arguments)
    try:
        for i, batch in enumerate(loader):
            if max_batches and i >= max_batches:
                break
            for j, why in zip(batch.get("skipped", []), batch.get("skipped_reasons", []), strict=True):
                skipped[int(j)] = why  # unusable files are dropped from their batch and counted
            if not batch.get("batch_size", 1):
                continue
            labels = batch["label"].to(device).long()
            present = batch["audio_present"].to(device).bool()
            if pretrained:
                update = _pretrained_batch(model, batch, labels, present, device)
                if not sharded:
                    acc.update(*update)
                else:
                    args = tuple(None if x is None else x.detach().cpu() for x in update[:5]) + (None,)
                    records.append((global_batch_index(i, dist.rank, dist.world_size), args))
                continue
            keys = list(batch.get("cache_key") or []) or None
            emb, alog = audio_features(model, batch["fbank"], keys, cache, device, precision)
            with autocast_context(device, precision):
                out = model(
                    batch["rgb"].to(device, non_blocking=True),  # (B,T,3,H,W) or (B,V,T,3,H,W)
                    batch["motion"].to(device, non_blocking=True),
                    audio_embedding=emb,
                    audio_logits=alog,
                    audio_present=present,
                    labels=labels,
                )
            rel_prob = out.relevance_logit.float().sigmoid()
            target = out.relevance_iou
            if target is not None:  # clips without audio have no relevance target
                rel_prob, target = rel_prob[present], target[present]
            loss = float(out.loss) if out.loss is not None else None
            if not sharded:
                acc.update(out.logits.float(), labels, out.audio_kept, rel_prob, target, loss)
                continue
            detach = (out.logits.float(), labels, out.audio_kept, rel_prob, target)
            args = tuple(None if x is None else x.detach().cpu() for x in detach) + (loss,)
            records.append((global_batch_index(i, dist.rank, dist.world_size), args))
    finally:
        model.train(was_training)
    if sharded:
        gathered: list[Any] = [None] * dist.world_size
        torch.distributed.all_gather_object(gathered, (records, skipped))
        for _, rank_skipped in gathered:
            skipped.update(rank_skipped)
        for _, args in sorted((r for rank_records, _ in gathered for r in rank_records), key=lambda r: r[0]):
            acc.update(*args)
    out = acc.compute(cfg.labels)
    out["skipped"] = len(skipped)
    out["skipped_items"] = sorted(skipped.items())
    return out


@torch.no_grad()
def _pretrained_batch(
    model: torch.nn.Module, batch: dict, labels: torch.Tensor, present: torch.Tensor, device
) -> tuple:
    """One batch of a kinetics400-family model -> the accumulator's arguments.

    The relevance decision is the model's own (``audio_kept``: the rule, or the learned
    net at its threshold); its target is the paper's, the IoU of the heard tags with the
    SAVLD labels of the *true* class.
    """
    out = model(batch["rgb"].to(device), None, fbank=batch["fbank"].to(device), audio_present=present)
    target = model.savld_iou(torch.sigmoid(out.audio_logits.float()), labels)
    decision = out.audio_kept.float()
    return out.logits.float(), labels, out.audio_kept, decision[present], target[present], None
