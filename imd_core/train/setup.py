"""Building what a run needs: model, SAVLD, datasets and loaders, optimiser, schedule.

Kept apart from the loop (``engine.py``) so both stay readable, and so ``imd eval``
reuses the data side.
"""

from __future__ import annotations

import logging
import math
import signal
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from imd_core.errors import ConfigError, DataError
from imd_core.model.imd_model import IMDModel
from imd_core.model.savld import Savld
from imd_core.train.config import TrainConfig
from imd_core.train.data_order import EpochOrderSampler, EvalShardSampler, SeededItems, epoch_seed

logger = logging.getLogger(__name__)


def build_model(cfg: TrainConfig, labels: list[str]) -> IMDModel:
    """The ``IMDModel`` to train, with ``labels`` as its classes.

    From backbones (``cfg.model``: ``ast_source``/``ast_config``, ``video_init``; with
    ``init.backbones_from`` real I3D / YAMNet weights) or, with ``init.from_model``, from a
    model folder: its architecture and weights, with the training options of
    ``cfg.model`` applied and a new head when the classes differ.
    """
    from imd_core.model.backbones import load_pretrained_backbones
    from imd_core.model.checkpoint import load_model
    from imd_core.model.config import ModelConfig
    from imd_core.model.weights import load_state_into
    from imd_core.resources import resolve_model_dir

    if not cfg.init.from_model:
        model = IMDModel(ModelConfig.from_dict({**cfg.model, "labels": list(labels)}))
        if cfg.init.backbones_from:
            load_pretrained_backbones(model, cfg.init.backbones_from)
        return model
    folder = resolve_model_dir(cfg.init.from_model)
    src = load_model(folder, device="cpu")
    if not isinstance(src, IMDModel):
        raise ConfigError(
            f"{folder} is a pretrained folder; start from it with --set init.from_model={cfg.init.from_model} "
            "and no recipe (imd train dispatches that to the fine-tuning of its real backbones)"
        )
    # The folder fixes the architecture and the backbones; the recipe may change only
    # training options (gating, losses, ast_trainable, ...): the rule the app's form uses too.
    mcfg = src.config.fine_tuned(cfg.model, labels, where=f"init.from_model {folder}")
    model = IMDModel(mcfg, load_pretrained=False)
    state = src.state_dict()
    if list(src.config.labels) == list(labels):
        load_state_into(model, state, source=str(folder))
        return model
    # Other classes or another order: everything but the class-indexed rows as is; the
    # classifier rows of classes the source knows (matched by name, case-insensitively)
    # move to their new index, only really new classes start from a fresh init.
    own = model.state_dict()
    keep = {
        k: v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape and not k.startswith(_CLASS_ROWS)
    }
    model.load_state_dict(keep, strict=False)
    kept, new = transfer_class_rows(model, src, labels)
    model.class_transfer = {"kept": kept, "new": new}
    logger.info(
        "fine-tuning %s: %d classes kept from the model (%s), %d new (%s)",
        folder, len(kept), ", ".join(kept[:5]) or "none", len(new), ", ".join(new[:5]) or "none",
    )  # fmt: skip
    return model


_CLASS_ROWS = ("head.", "visual_head.")


def transfer_class_rows(model: IMDModel, src: IMDModel, labels: list[str]) -> tuple[list[str], list[str]]:
    """Copies the head rows (and visual-head rows) of every class ``src`` knows by name.

    Returns ``(kept, new)`` class names. Rows of new classes keep their fresh init.
    """
    index = {name.casefold(): i for i, name in enumerate(src.config.labels)}
    kept, new = [], []
    pairs = []
    for j, name in enumerate(labels):
        i = index.get(name.casefold())
        (kept if i is not None else new).append(name)
        if i is not None:
            pairs.append((j, i))
    with torch.no_grad():
        for dst, old in ((model.head, src.head), (model.visual_head, src.visual_head)):
            if dst is None or old is None or dst.weight.shape[1] != old.weight.shape[1]:
                continue
            for j, i in pairs:
                dst.weight[j] = old.weight[i]
                dst.bias[j] = old.bias[i]
        if not new and len(labels) == len(src.config.labels) and model.config.relevance_agreement:
            _permute_agreement_inputs(model, src, [i for _, i in sorted(pairs)])
    return kept, new


def _permute_agreement_inputs(model: IMDModel, src: IMDModel, order: list[int]) -> None:
    """Same classes, another order: the relevance net's per-class agreement inputs
    (``[p_v * s (C), s (C), sum (1)]`` after the embeddings) follow their classes."""
    c = len(order)
    start = model.relevance.fc1.weight.shape[1] - (2 * c + 1)
    cols = list(range(start)) + [start + i for i in order] + [start + c + i for i in order] + [start + 2 * c]
    idx = torch.tensor(cols)
    model.relevance.fc1.weight.copy_(src.relevance.fc1.weight[:, idx])
    model.relevance.fc1.bias.copy_(src.relevance.fc1.bias)
    model.relevance.norm.weight.copy_(src.relevance.norm.weight[idx])
    model.relevance.norm.bias.copy_(src.relevance.norm.bias[idx])
    model.relevance.fc2.load_state_dict(src.relevance.fc2.state_dict())


def build_savld(cfg: TrainConfig, model: IMDModel, labels: list[str]) -> Savld:
    """The SAVLD between the classes and the AST's labels: given, inherited or built."""
    from imd_core.resources import resolve_model_dir

    audio_labels = list(model.ast.labels)
    if cfg.init.savld:
        savld = Savld.load(Path(cfg.init.savld))
    elif cfg.init.from_model and (source := resolve_model_dir(cfg.init.from_model) / "savld.json").is_file():
        savld = Savld.load(source)
    else:
        logger.info("building the SAVLD for %d classes x %d audio labels", len(labels), len(audio_labels))
        savld = Savld.build(labels, audio_labels, encoder=cfg.init.text_encoder, k=cfg.init.savld_k)
    # Class names match case-insensitively everywhere (datasets do); so do SAVLD entries.
    folded = {k.casefold(): k for k in savld.mapping}
    for name in labels:
        if name not in savld.mapping and name.casefold() in folded:
            savld.mapping[name] = savld.mapping[folded[name.casefold()]]
            savld.video_labels = [name if v == folded[name.casefold()] else v for v in savld.video_labels]
    missing = sorted(set(labels) - set(savld.mapping))
    if missing:
        raise ConfigError(
            f"the SAVLD has no entry for class(es) {missing[:5]}; rebuild it with `imd savld build` for these labels"
        )
    return savld


def load_train_val(data: Path, val_fraction: float, seed: int) -> tuple[Any, Any, Any]:
    """The dataset index and its train and validation parts.

    Clips with a split (manifest column or split folders) keep it; the others are
    split per class, seeded: ``val_fraction`` for validation, the rest for training.
    ``test`` clips are never used in training.
    """
    from imd_core.data.manifest import load_dataset_index

    index = load_dataset_index(data, split_ratios=(1.0 - val_fraction, val_fraction, 0.0), seed=seed)
    return index, index.split("train"), index.split("val")


def probe_splits(
    cfg: TrainConfig, indexes: list[Any], run_dir: Path, info: Any = None
) -> tuple[list[Any], list[Any]]:
    """``indexes`` without the files that fail the pre-training probe (:mod:`imd_core.train.probe`).

    Every file is opened and its first packets read in a decode sandbox killed after
    ``cfg.data.probe_timeout`` seconds (0: no probe; files the cache already marks bad,
    e.g. a decode stopped mid-stream in an earlier epoch or run, are still left out).
    Results are cached in ``run_dir/probe_cache.json``; under DDP rank 0 probes and the
    other ranks read its cache.

    Returns:
        The filtered indexes (same order) and the excluded files (``Excluded``: path, reason).
    """
    cache = run_dir / "probe_cache.json"
    if cfg.data.probe_timeout <= 0 and not cache.is_file():
        return list(indexes), []
    # probe_timeout 0: no probe, but files recorded as bad (a stopped decode) stay out
    from imd_core.train.distributed import barrier
    from imd_core.train.probe import exclude_unprobed

    workers = max(1, min(2, cfg.num_workers))
    main = info is None or info.is_main
    if main:
        kept, excluded = exclude_unprobed(
            indexes, timeout=cfg.data.probe_timeout, cache_file=cache, workers=workers
        )
    if info is not None and info.enabled:
        barrier(info)  # rank 0's cache is complete: the other ranks only hash and read it
    if not main:
        kept, excluded = exclude_unprobed(
            indexes, timeout=cfg.data.probe_timeout, cache_file=cache, workers=workers
        )
    if excluded:
        logger.warning("%d files excluded by the probe (they time out or cannot be opened)", len(excluded))
    return kept, excluded


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: the main process saves and stops the
    # workers itself, so workers must not die on SIGINT first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_train_loader(
    dataset: Any, cfg: TrainConfig, *, rank: int, world_size: int, pin: bool
) -> tuple[DataLoader, EpochOrderSampler, SeededItems]:
    """Loader over ``dataset`` in the seeded epoch order; ``batch_size`` is global."""
    if cfg.batch_size % world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the {world_size} DDP processes")
    per_rank = cfg.batch_size // world_size
    if len(dataset) < cfg.batch_size:
        raise DataError(
            f"only {len(dataset)} training clips for a batch of {cfg.batch_size}; lower --batch-size"
        )
    from imd_core.data.dataset import collate_clips

    seeded = SeededItems(dataset, cfg.seed)
    sampler = EpochOrderSampler(len(dataset), per_rank, cfg.seed, rank=rank, world_size=world_size)
    loader = DataLoader(
        seeded,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=pin,
        drop_last=True,
        collate_fn=collate_clips,
        worker_init_fn=_worker_init,
        # An explicit generator: creating an iterator never draws from the global RNG,
        # which belongs to the model (dropout) and is saved for resume.
        generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, -1)),
        persistent_workers=False,
    )
    return loader, sampler, seeded


def make_eval_loader(
    dataset: Any,
    batch_size: int,
    num_workers: int,
    pin: bool,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Loader in dataset order; under DDP this rank's share of whole batches
    (:class:`EvalShardSampler`), so batches are the same as in one process."""
    from imd_core.data.dataset import collate_clips

    sampler = (
        EvalShardSampler(len(dataset), batch_size, rank=rank, world_size=world_size)
        if world_size > 1
        else None
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin,
        collate_fn=collate_clips,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(0),
    )


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on biases, norms and tokens; AST at a scaled lr."""
    o = cfg.optim
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_ast = name.startswith("ast.")
        decay = p.ndim >= 2 and "token" not in name and "pos_embed" not in name
        groups.setdefault((is_ast, decay), []).append(p)
    param_groups = [
        {
            "params": ps,
            "lr": o.lr * (o.ast_lr_scale if is_ast else 1.0),
            "weight_decay": o.weight_decay if decay else 0.0,
        }
        for (is_ast, decay), ps in sorted(groups.items())
    ]
    if not param_groups:
        raise ConfigError(
            "the model has no trainable parameters; check model.ast_trainable and init.from_model"
        )
    if o.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=o.lr, betas=tuple(o.betas))
    if o.name == "sgd":
        return torch.optim.SGD(param_groups, lr=o.lr, momentum=o.momentum)
    raise ConfigError(f"unknown optimiser {o.name!r}; choose one of ['adamw', 'sgd']")


def lr_factor(step: int, *, total: int, warmup: int, name: str, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (linear warm-up, then decay)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if name == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if name == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "linear":
        return min_ratio + (1.0 - min_ratio) * (1.0 - progress)
    raise ConfigError(f"unknown schedule {name!r}; choose one of ['cosine', 'linear', 'constant']")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    s = cfg.schedule
    total = steps_per_epoch * cfg.epochs
    warmup = s.warmup_steps if s.warmup_steps >= 0 else int(round(s.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        return lr_factor(step, total=total, warmup=warmup, name=s.name, min_ratio=s.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
