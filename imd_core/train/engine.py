"""The training loop: epochs of seeded batches, checkpoints, validation, early stopping.

``train(cfg, data, run_dir)`` runs in one process or in each ``torchrun`` process.
SIGINT/SIGTERM saves ``last/`` at the next optimiser step; ``resume=True`` continues from
it with the same weights, RNG states and data position, so on CPU the final weights
equal an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from imd_core.errors import ImdError, TrainingError
from imd_core.media.verdict import strip_path
from imd_core.train import event_schema as ev
from imd_core.train.ast_cache import ASTCache, tagger_id
from imd_core.train.checkpointing import (
    load_training_state,
    recover_interrupted_swap,
    save_model_folder,
    set_rng_state,
    training_state,
)
from imd_core.train.config import TrainConfig
from imd_core.train.data_order import EpochOrderSampler, SeededItems, isolated_rng
from imd_core.train.distributed import (
    DistInfo,
    any_flag,
    barrier,
    broadcast_flag,
    init_distributed,
    shutdown_distributed,
)
from imd_core.train.evaluate import evaluate
from imd_core.train.events import EventWriter
from imd_core.train.metrics import MetricsCsv, TensorBoardLog, save_confusion_png
from imd_core.train.probe import mark_excluded
from imd_core.train.setup import (
    build_model,
    build_optimizer,
    build_savld,
    build_scheduler,
    load_train_val,
    make_eval_loader,
    make_train_loader,
    probe_splits,
)
from imd_core.train.steps import compile_train_model, forward_batch

logger = logging.getLogger(__name__)

EXIT_INTERRUPTED = 130


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run reports to its caller."""

    outcome: str  # completed, early_stopped, interrupted
    epochs_run: int
    step: int
    best_epoch: int
    best_value: float | None

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.outcome == "interrupted" else 0


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop saves ``last/`` at the next step and returns.

    Until the loop starts (``saving`` is False: reading the data, probing, building the
    model) there is nothing to save, so a signal stops at once (``KeyboardInterrupt``):
    a set-up that takes long, or hangs, must not swallow the first Ctrl+C.
    """

    def __init__(self) -> None:
        self.requested = False
        self.saving = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (tests calling train() in a thread)
                pass

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested or not self.saving:  # a second Ctrl-C (the user insists), or set-up
            self.signal_name = self.signal_name or signal.Signals(signum).name
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        logger.warning("%s received: saving last/ and stopping after this step", self.signal_name)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def resolve_train_device(choice: str, info_local_rank: int = 0) -> torch.device:
    from imd_core.inference.device import resolve_device

    device = resolve_device(choice)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info_local_rank)
    return device


def train(
    cfg: TrainConfig,
    data: Path,
    run_dir: Path,
    *,
    resume: bool = False,
    events_stream: IO[str] | None = None,
) -> RunResult:
    """Runs (or resumes) a training run into ``run_dir``.

    Raises:
        ImdError: on a configuration, data or checkpoint problem (``run_failed`` is
            written first); any other exception is reported as ``run_failed`` and
            re-raised as :class:`TrainingError`.
    """
    run_dir = Path(run_dir)
    info = init_distributed("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    writer = EventWriter(run_dir / "events.jsonl", events_stream, run=str(run_dir), enabled=info.is_main)
    stop = StopRequest()
    try:
        return _Run(cfg, Path(data), run_dir, resume, writer, stop, info).run()
    except ImdError as exc:
        writer.write(ev.RunFailed(reason=str(exc), error=type(exc).__name__))
        raise
    except KeyboardInterrupt:
        if not stop.saving and stop.signal_name:  # during set-up: nothing to save, stopped at once
            reason = f"stopped by {stop.signal_name} during set-up, before training; continue with --resume"
            logger.warning("%s", reason)
            writer.write(
                ev.RunFinished(
                    outcome="interrupted",
                    stopped=True,
                    epochs_run=0,
                    step=0,
                    best_epoch=-1,
                    best_metric=cfg.early_stopping_metric,
                    best_value=None,
                    elapsed_s=0.0,
                    reason=reason,
                )
            )
            return RunResult("interrupted", 0, 0, -1, None)
        # a second Ctrl-C: stopped at once, without saving
        writer.write(
            ev.RunFailed(
                reason="stopped at once by a second interrupt; last/ holds the previous "
                "checkpoint, continue with --resume",
                error="KeyboardInterrupt",
            )
        )
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        logger.exception("training failed")  # the traceback goes to stderr (the app keeps it)
        writer.write(ev.RunFailed(reason=reason, error=type(exc).__name__))
        raise TrainingError(f"training failed ({reason}); the traceback is above") from exc
    finally:
        stop.restore()
        writer.close()
        shutdown_distributed()


def _observed(loader: Any, on_batch: Any) -> Any:
    """``loader``'s batches, each shown to ``on_batch`` first."""
    for batch in loader:
        on_batch(batch)
        yield batch


def _sum_over_ranks(values: list[Any], dtype: torch.dtype, info: DistInfo, device: torch.device) -> list[Any]:
    """``values`` summed over the DDP processes (each counted its own share); as they are
    in one process."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=dtype, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def _open_run_folder(run_dir: Path, resume: bool, info: DistInfo) -> dict[str, Any] | None:
    """Makes ``run_dir`` ready (rank 0) and returns the training state to resume, if any."""
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        recover_interrupted_swap(run_dir)
        if not resume and (run_dir / "last").exists():
            raise TrainingError(
                f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out"
            )
    barrier(info)
    return load_training_state(run_dir / "last") if resume else None


def _seed_everything(seed: int) -> None:
    import random

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@dataclasses.dataclass(frozen=True)
class _Loaders:
    """The clips of a run and their loaders (training in the seeded epoch order)."""

    train_ds: Any
    val_ds: Any | None
    train: DataLoader
    sampler: EpochOrderSampler
    seeded: SeededItems
    val: DataLoader | None


def _make_loaders(
    cfg: TrainConfig, model_config: Any, indexes: tuple[Any, Any], run_dir: Path, info: DistInfo, pin: bool
) -> _Loaders:
    """The training and validation clips (``indexes``) as the model takes them, and their loaders."""
    from imd_core.data.dataset import ClipDataset
    from imd_core.data.transforms import ClipPreprocessor

    augment = cfg.augment
    pre = ClipPreprocessor.from_model_config(
        model_config, flip=augment.flip, train_scale=list(augment.train_scale)
    )
    clip_s = cfg.clip_seconds or None
    dataset: Any = ClipDataset
    if cfg.data.frame_cache:  # decode each clip once (imd_core/train/frame_cache.py)
        from functools import partial

        from imd_core.train.frame_cache import FrameCacheDataset

        folder = run_dir / "frame_cache" if cfg.data.frame_cache == "auto" else Path(cfg.data.frame_cache)
        dataset = partial(FrameCacheDataset, cache_dir=folder, frame_grid=cfg.data.frame_grid)
    timeout = cfg.data.loader_timeout
    train_index, val_index = indexes
    train_ds = dataset(
        train_index,
        pre,
        train=True,
        cross_modal_p=augment.cross_modal_p,
        clip_seconds=clip_s,
        seed=cfg.seed,
        timeout=timeout,
    )
    val_ds = (
        dataset(val_index, pre, train=False, clip_seconds=clip_s, timeout=timeout) if len(val_index) else None
    )
    if val_ds is None:
        logger.warning("no validation clips: early stopping and best/ follow the training accuracy")
    loader, sampler, seeded = make_train_loader(
        train_ds, cfg, rank=info.rank, world_size=info.world_size, pin=pin
    )
    # Every rank validates whole batches of batch_size, round-robin (same batches as one process).
    val = (
        make_eval_loader(
            val_ds, cfg.batch_size, cfg.num_workers, pin, rank=info.rank, world_size=info.world_size
        )
        if val_ds
        else None
    )
    return _Loaders(train_ds, val_ds, loader, sampler, seeded, val)


def _steps_per_epoch(cfg: TrainConfig, loaders: _Loaders) -> int:
    """Optimiser steps per epoch (at most ``max_steps_per_epoch``); refuses a run without one."""
    micro = loaders.sampler.batches_per_epoch
    if cfg.max_steps_per_epoch:
        micro = min(micro, cfg.max_steps_per_epoch * cfg.grad_accum_steps)
    steps = micro // cfg.grad_accum_steps
    if steps < 1:
        raise TrainingError(
            f"{len(loaders.train_ds)} training clips make no full optimiser step of batch {cfg.batch_size} x "
            f"{cfg.grad_accum_steps} accumulation; lower --batch-size or grad_accum_steps"
        )
    return steps


def _wrap(model: torch.nn.Module, cfg: TrainConfig, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: the model, under DDP and/or compiled."""
    wrapped = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # IMD gating leaves some parameters without gradient in some batches
            # (the no-audio token when every clip keeps its audio).
            find_unused_parameters=True,
        )
    if cfg.compile:  # forward + loss as one graph (fullgraph outside DDP; see compile_train_model)
        wrapped = compile_train_model(wrapped, fullgraph=not info.enabled)
    return wrapped


def _fresh_progress() -> dict[str, Any]:
    """What ``last/`` saves of the run's progress besides its position (resumed as is)."""
    return {
        "best_value": None,
        "best_epoch": -1,
        "bad_epochs": 0,
        "elapsed_s": 0.0,
        "train_loss_sum": 0.0,
        "train_correct": 0,
        "train_count": 0,
    }


class _Run:
    """One attempt at a run: ``__init__`` sets it up (or restores it from ``last/``), :meth:`run`
    trains it."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: Path,
        run_dir: Path,
        resume: bool,
        writer: EventWriter,
        stop: StopRequest,
        info: DistInfo,
    ):
        self.cfg, self.run_dir, self.writer, self.stop, self.info = cfg, run_dir, writer, stop, info
        self.device = resolve_train_device(cfg.device, info.local_rank)
        state = _open_run_folder(run_dir, resume, info)
        self.resumed = state is not None
        _seed_everything(cfg.seed)
        index, train_index, val_index = load_train_val(data, cfg.val_fraction, cfg.seed)
        # files that hang or fail at open never reach a DataLoader (data.probe_timeout)
        (train_index, val_index), self.excluded = probe_splits(cfg, [train_index, val_index], run_dir, info)
        self.labels = list(index.labels)
        if not len(train_index):
            raise TrainingError(f"{data} has no training clips; check the manifest's split column")
        self.model = build_model(cfg, self.labels)
        self.savld = build_savld(cfg, self.model, self.labels)
        self.model.set_savld(self.savld)
        if info.is_main:
            self.savld.save(run_dir / "savld.json")
            if not resume:
                (run_dir / "config.json").write_text(
                    json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8"
                )
        self.data = _make_loaders(
            cfg, self.model.config, (train_index, val_index), run_dir, info, pin=self.device.type == "cuda"
        )
        self.model.to(self.device)
        self.ast_cache = None  # the AST's outputs per clip, while it is frozen
        if not self.model.config.ast_trainable:
            folder = Path(cfg.ast_cache_dir) if cfg.ast_cache_dir else run_dir / "ast_cache"
            self.ast_cache = ASTCache(
                folder, tagger_id(self.model.ast.state_dict(), str(self.model.config.ast_source))
            )
        self.steps_per_epoch = _steps_per_epoch(cfg, self.data)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.progress = _fresh_progress()
        self.start_epoch, self.start_batch, self.step = 0, 0, 0
        if state is not None:
            from imd_core.model.checkpoint import load_model

            self.model.load_state_dict(load_model(run_dir / "last", device="cpu").state_dict())
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_epoch, self.start_batch, self.step = (
                state["epoch"],
                state["batch_in_epoch"],
                state["step"],
            )
            self.progress.update(state["progress"])
        self.wrapped = _wrap(self.model, cfg, info, self.device)
        self.csv = self.tb = None  # rank 0 writes the metrics
        if info.is_main:
            self.csv = MetricsCsv(
                run_dir / "metrics.csv", keep_epochs_below=self.start_epoch if resume else None
            )
            self.tb = TensorBoardLog(run_dir / "tensorboard")
        self.skipped: dict[int, str] = {}  # unusable training clips seen, and why
        self.frame_counts = [0, 0]  # decoded-frame cache hits and misses this epoch
        self.started = time.time()  # minus the seconds of earlier attempts, once run() starts
        if state is not None:
            set_rng_state(state["rng"])  # last: nothing after this may draw random numbers

    @property
    def micro_per_epoch(self) -> int:
        return self.steps_per_epoch * self.cfg.grad_accum_steps

    # ------------------------------------------------------- unusable files
    def _exclude_stopped(self, batch: dict[str, Any], dataset: Any) -> None:
        """Files whose decode the sandbox stopped (a hang, a crash): left out of ``dataset``
        from the next epoch on, and recorded as excluded for ``--resume`` and later runs."""
        for j, why in batch["stopped"]:
            path = dataset.index.entries[j].path
            dataset.bad[j] = why  # copied into the next epoch's loader workers
            if mark_excluded(self.run_dir / "probe_cache.json", path, strip_path(why, path)):
                logger.warning("excluded from now on: %s", why)

    def _count_frames(self, batch: dict[str, Any]) -> None:
        self.frame_counts[0] += int(batch.get("frame_cache_hits", 0))
        self.frame_counts[1] += int(batch.get("frame_cache_misses", 0))

    def _on_val_batch(self, batch: dict[str, Any]) -> None:
        self._count_frames(batch)
        self._exclude_stopped(batch, self.data.val_ds)

    # ------------------------------------------------------------- helpers
    def _save_last(self, epoch: int, batch_in_epoch: int) -> None:
        if not self.info.is_main:
            return
        self.progress["elapsed_s"] = self._elapsed()
        state = training_state(
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            epoch=epoch,
            batch_in_epoch=batch_in_epoch,
            step=self.step,
            progress=dict(self.progress),
        )
        path = save_model_folder(self.model, self.run_dir / "last", savld=self.savld, state=state)
        self.writer.write(ev.CheckpointSaved(kind="last", path=str(path), epoch=epoch, step=self.step))

    def _elapsed(self) -> float:
        return time.time() - self.started

    def _improved(self, value: float) -> bool:
        best = self.progress["best_value"]
        if best is None:
            return True
        return value > best if self.cfg.early_stopping_metric == "val_top1" else value < best

    def _precision_name(self) -> str:
        if self.device.type == "cuda" and self.cfg.precision in ("auto", "bf16"):
            return "bf16"
        return "bf16" if self.cfg.precision == "bf16" else "fp32"

    # ------------------------------------------------------------------ loop
    def run(self) -> RunResult:
        self.stop.saving = True  # from here a first signal saves last/ at the next step
        cfg, info = self.cfg, self.info
        self.started = time.time() - float(self.progress.get("elapsed_s", 0.0))
        total_steps = self.steps_per_epoch * cfg.epochs
        transfer = getattr(
            self.model, "class_transfer", None
        )  # from a model folder with other classes or order
        self.writer.write(
            ev.RunStarted(
                config=cfg.name,
                device=str(self.device),
                precision=self._precision_name(),
                world_size=info.world_size,
                epochs=cfg.epochs,
                steps_per_epoch=self.steps_per_epoch,
                total_steps=total_steps,
                train_clips=len(self.data.train_ds),
                val_clips=len(self.data.val_ds) if self.data.val_ds else 0,
                classes=list(self.labels),
                resumed=self.resumed,
                start_epoch=self.start_epoch,
                start_step=self.step,
                excluded=[ev.Excluded(path=str(x.path), reason=x.reason) for x in self.excluded],
                class_transfer=ev.ClassTransfer(**transfer) if transfer else None,
            )
        )
        outcome = "completed"
        epochs_run = self.start_epoch
        for epoch in range(self.start_epoch, cfg.epochs):
            if not self._train_epoch(epoch, total_steps):
                outcome = "interrupted"
                break
            epochs_run = epoch + 1
            if self._end_epoch(epoch):
                outcome = "early_stopped"
                break
            if any_flag(self.stop.requested, info, self.device):  # arrived during validation; last/ is saved
                outcome = "interrupted"
                break
        progress = self.progress
        self.writer.write(
            ev.RunFinished(
                outcome=outcome,
                stopped=outcome == "interrupted",
                epochs_run=epochs_run,
                step=self.step,
                best_epoch=progress["best_epoch"],
                best_metric=cfg.early_stopping_metric,
                best_value=progress["best_value"],
                elapsed_s=self._elapsed(),
            )
        )
        if self.tb is not None:
            self.tb.close()
        return RunResult(outcome, epochs_run, self.step, progress["best_epoch"], progress["best_value"])

    def _train_epoch(self, epoch: int, total_steps: int) -> bool:
        """One epoch from ``start_batch``; False when stopped by a signal (saved)."""
        cfg, info, progress = self.cfg, self.info, self.progress
        start = self.start_batch if epoch == self.start_epoch else 0
        if start == 0:
            progress.update(train_loss_sum=0.0, train_correct=0, train_count=0)
        self.data.sampler.set_epoch(epoch, start)
        self.data.seeded.epoch = epoch
        if self.ast_cache is not None:
            self.ast_cache.hits = self.ast_cache.misses = 0
        self.frame_counts = [0, 0]
        self.model.train()
        accum = cfg.grad_accum_steps
        it = iter(self.data.train)
        t_log, clips_log = time.time(), 0
        micro = start
        while micro < self.micro_per_epoch:
            # num_workers=0 loads in this process: keep the item seeding off the model's RNG.
            with isolated_rng() if cfg.num_workers == 0 else contextlib.nullcontext():
                batch = next(it)
            self._count_frames(batch)
            self._exclude_stopped(batch, self.data.train_ds)
            sync = (micro + 1) % accum == 0
            no_sync = getattr(self.wrapped, "no_sync", None)
            ctx = no_sync() if (info.enabled and not sync and no_sync) else contextlib.nullcontext()
            with ctx:
                out = forward_batch(
                    self.wrapped,
                    self.model,
                    batch,
                    device=self.device,
                    precision=cfg.precision,
                    cache=self.ast_cache,
                    ast_trainable=self.ast_cache is None,
                )
                (out.loss / accum).backward()
            for j, why in zip(batch["skipped"], batch["skipped_reasons"], strict=True):
                self.skipped[int(j)] = why
            n = int(batch["label"].shape[0])
            progress["train_loss_sum"] += float(out.loss.detach()) * n
            progress["train_correct"] += int((out.logits.detach().argmax(-1).cpu() == batch["label"]).sum())
            progress["train_count"] += n
            clips_log += n * info.world_size
            micro += 1
            if not sync:
                continue
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            if self.step % cfg.log_every_steps == 0 or micro == self.micro_per_epoch:
                self._log_step(epoch, total_steps, out, clips_log / max(1e-9, time.time() - t_log))
                t_log, clips_log = time.time(), 0
            stop_now = any_flag(self.stop.requested, info, self.device)
            periodic = cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0
            if (stop_now or periodic) and micro < self.micro_per_epoch:
                self._save_last(epoch, micro)
            elif stop_now:  # the epoch's last step: save as "start of the next epoch"
                self._save_last(epoch + 1, 0)
            if stop_now:
                logger.warning("stopped by %s; resume with --resume", self.stop.signal_name or "a signal")
                return False
        return True

    def _log_step(self, epoch: int, total_steps: int, out: Any, clips_per_s: float) -> None:
        loss = float(out.loss.detach())
        lr = self.optimizer.param_groups[-1]["lr"]
        losses = {k: float(v) for k, v in (getattr(out, "losses", None) or {}).items()}
        self.writer.write(
            ev.Step(
                epoch=epoch,
                step=self.step,
                total_steps=total_steps,
                loss=loss,
                losses=losses,
                lr=float(lr),
                clips_per_s=clips_per_s,
            )
        )
        if self.tb is not None:
            self.tb.scalars({"train/loss": loss, "train/lr": lr, "train/clips_per_s": clips_per_s}, self.step)

    def _end_epoch(self, epoch: int) -> bool:
        """Validation, best/last checkpoints, metrics; True when early stopping triggers."""
        cfg, info, progress = self.cfg, self.info, self.progress
        # every rank saw its own slice of each global batch
        sums = [progress["train_loss_sum"], float(progress["train_correct"]), float(progress["train_count"])]
        loss_sum, correct, clips = _sum_over_ranks(sums, torch.float64, info, self.device)
        train_m = {
            "loss": loss_sum / max(1.0, clips),
            "top1": correct / max(1.0, clips),
            "clips": int(clips),
            "skipped": len(self.skipped),
        }
        # Every rank evaluates its share and gets the same gathered metrics (a collective).
        val = (
            evaluate(
                self.model,
                _observed(self.data.val, self._on_val_batch),
                device=self.device,
                precision=cfg.precision,
                cache=self.ast_cache,
                dist=info,
            )
            if self.data.val is not None
            else {}  # not truthiness: a rank may have no batch (len 0)
        )
        if val:
            logger.info(
                "validation epoch %d (rank %d of %d): clips %d top1 %.6f loss %.8f",
                epoch,
                info.rank,
                info.world_size,
                val.get("clips", 0),
                val.get("top1") or 0.0,
                val.get("loss") or 0.0,
            )
        ast_counts = frame_counts = None
        if self.ast_cache is not None:  # each rank counted its own training slices and validation batches
            hits, misses = _sum_over_ranks(
                [self.ast_cache.hits, self.ast_cache.misses], torch.int64, info, self.device
            )
            ast_counts = ev.CacheCounts(hits=int(hits), misses=int(misses))
        if cfg.data.frame_cache:  # each rank's loaders counted their own items
            hits, misses = _sum_over_ranks(self.frame_counts, torch.int64, info, self.device)
            frame_counts = ev.CacheCounts(hits=int(hits), misses=int(misses))
        stop_early = info.is_main and self._record_epoch(epoch, train_m, val, ast_counts, frame_counts)
        return broadcast_flag(stop_early, info, self.device)

    def _record_epoch(
        self,
        epoch: int,
        train_m: dict[str, Any],
        val: dict[str, Any],
        ast_counts: ev.CacheCounts | None,
        frame_counts: ev.CacheCounts | None,
    ) -> bool:
        """Rank 0: the epoch's metrics, events and checkpoints; True when early stopping triggers."""
        cfg, progress = self.cfg, self.progress
        if cfg.early_stopping_metric == "val_loss" and val.get("loss") is not None:
            value = val["loss"]
        else:
            value = val.get("top1", train_m["top1"])
        improved = self._improved(value)
        if improved:
            progress.update(best_value=value, best_epoch=epoch, bad_epochs=0)
        else:
            progress["bad_epochs"] += 1
        stop_early = cfg.early_stopping_patience > 0 and progress["bad_epochs"] >= cfg.early_stopping_patience
        elapsed = self._elapsed()
        epochs_done = epoch + 1
        eta = elapsed / max(1, epochs_done) * (cfg.epochs - epochs_done) if not stop_early else 0.0
        val_m = ev.ValMetrics(
            loss=val.get("loss"), top1=val.get("top1"), top5=val.get("top5"),
            mean_class_accuracy=val.get("mean_class_accuracy"), relevance_accuracy=val.get("relevance_accuracy"),
            audio_drop_rate=val.get("audio_drop_rate"), clips=int(val.get("clips", 0)),
            skipped=int(val.get("skipped", 0)),
        ) if val else None  # fmt: skip
        val_summary = dataclasses.asdict(val_m) if val_m else {}
        lr = self.optimizer.param_groups[-1]["lr"]
        self.csv.append(
            {
                "epoch": epoch,
                "step": self.step,
                "lr": lr,
                "train_loss": train_m["loss"],
                "train_top1": train_m["top1"],
                "val_loss": val.get("loss"),
                "val_top1": val.get("top1"),
                "val_top5": val.get("top5"),
                "val_mean_class_accuracy": val.get("mean_class_accuracy"),
                "val_relevance_accuracy": val.get("relevance_accuracy"),
                "val_audio_drop_rate": val.get("audio_drop_rate"),
                "elapsed_s": round(elapsed, 2),
            }
        )
        self.tb.scalars(
            {f"train/{k}": v for k, v in train_m.items()} | {f"val/{k}": v for k, v in val_summary.items()},
            self.step,
        )
        self.writer.write(
            ev.Epoch(
                epoch=epoch,
                step=self.step,
                train=ev.TrainMetrics(**train_m),
                val=val_m,
                best=improved,
                elapsed_s=elapsed,
                eta_s=eta,
                ast_cache=ast_counts,
                frame_cache=frame_counts,
            )
        )
        if improved:
            path = save_model_folder(self.model, self.run_dir / "best", savld=self.savld)
            if val:
                (self.run_dir / "best_metrics.json").write_text(
                    json.dumps(val, indent=1) + "\n", encoding="utf-8"
                )
                save_confusion_png(
                    val["confusion_matrix"],
                    self.labels,
                    self.run_dir / "confusion_matrix.png",
                    title=f"validation, epoch {epoch + 1} (best)",
                )  # events count from 0, people from 1
            self.writer.write(ev.CheckpointSaved(kind="best", path=str(path), epoch=epoch, step=self.step))
        self._save_last(epoch + 1, 0)
        if stop_early:
            self.writer.write(
                ev.EarlyStopped(
                    epoch=epoch,
                    best_epoch=progress["best_epoch"],
                    metric=cfg.early_stopping_metric,
                    best_value=progress["best_value"],
                    patience=cfg.early_stopping_patience,
                )
            )
        return stop_early
