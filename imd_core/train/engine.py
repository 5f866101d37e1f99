"""The training loop: epochs of seeded batches, checkpoints, validation, early stopping.

``train(cfg, data, run_dir)`` is what ``imd train`` calls, in one process or in each
process of a ``torchrun`` launch. It reports through :class:`EventWriter` (rank 0),
saves ``last/`` every ``checkpoint_every_steps`` optimiser steps and at every epoch end,
``best/`` whenever the validation metric improves, and on SIGINT/SIGTERM saves
``last/`` at the next optimiser step and returns. ``resume=True`` continues from
``last/``: same weights, optimiser, schedule, RNG states and position in the epoch's
seeded data order, so on CPU the final weights equal an uninterrupted run's.

Every wait for a batch (training and validation) is bounded by ``data.loader_timeout``
(:mod:`imd_core.train.watchdog`): a file that hangs mid-stream inside FFmpeg ends the
run with ``run_failed`` naming it, is recorded as excluded in ``probe_cache.json`` and
is left out by ``--resume``.
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

from imd_core.errors import ImdError, TrainingError
from imd_core.train import event_schema as ev
from imd_core.train import probe as P
from imd_core.train import setup as S
from imd_core.train.ast_cache import ASTCache, tagger_id
from imd_core.train.checkpointing import (
    load_training_state,
    recover_interrupted_swap,
    save_model_folder,
    set_rng_state,
    training_state,
)
from imd_core.train.config import TrainConfig
from imd_core.train.data_order import isolated_rng
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
from imd_core.train.steps import compile_train_model, forward_batch
from imd_core.train.watchdog import Hang, LoaderHang, LoaderWatchdog, failure_writer, hang_message

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
    runner: _Run | None = None
    try:
        runner = _Run(cfg, Path(data), run_dir, resume, writer, stop, info)
        return runner.run()
    except ImdError as exc:
        failure_writer(writer, run_dir, loud=isinstance(exc, LoaderHang)).write(
            ev.RunFailed(reason=str(exc), error=type(exc).__name__)
        )
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
        if runner is not None:
            runner.dog.stop()
        stop.restore()
        writer.close()
        shutdown_distributed()


class _Run:
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
        self.cfg, self.data, self.run_dir, self.resume = cfg, data, run_dir, resume
        self.writer, self.stop, self.info = writer, stop, info
        from imd_core.data.dataset import DecodeLog

        self.decode_log = DecodeLog(run_dir / "decoding")
        self.dog = LoaderWatchdog(
            cfg.data.loader_timeout,
            self.decode_log,
            message=lambda h: hang_message(h, cfg.data.loader_timeout),
            on_hang=self._exclude_hung,
            on_fatal=self._fatal,
        )
        self.device = resolve_train_device(cfg.device, info.local_rank)
        self.t0 = time.time()

    # ------------------------------------------------------- loader hangs
    def _exclude_hung(self, hang: Hang) -> None:
        """Records a file that hung mid-stream as excluded (``--resume`` leaves it out)."""
        if hang.path is None:
            return
        reason = f"decode hung for {hang.seconds:.3g} s mid-stream (data.loader_timeout {self.cfg.data.loader_timeout:g} s)"
        if P.mark_excluded(self.run_dir / "probe_cache.json", hang.path, reason):
            logger.error("excluded from now on: %s: %s", hang.path, reason)

    def _fatal(self, message: str) -> None:
        """From the watchdog thread, the main thread stuck in C: the last event, flushed."""
        out = failure_writer(self.writer, self.run_dir, loud=True)
        out.write(ev.RunFailed(reason=message, error=LoaderHang.__name__))
        out.close()

    # ----------------------------------------------------------------- set-up
    def _prepare(self) -> None:
        cfg, info = self.cfg, self.info
        self.state: dict[str, Any] | None = None
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            recover_interrupted_swap(self.run_dir)
            self.decode_log.clear()  # records of a killed earlier run
            if not self.resume and (self.run_dir / "last").exists():
                raise TrainingError(
                    f"{self.run_dir} already holds a run; pass --resume to continue it or choose a new --out"
                )
        barrier(info)
        if self.resume:
            self.state = load_training_state(self.run_dir / "last")
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        import random

        random.seed(cfg.seed)

        from imd_core.data.dataset import ClipDataset
        from imd_core.data.transforms import ClipPreprocessor

        index, train_index, val_index = S.load_train_val(self.data, cfg.val_fraction, cfg.seed)
        # files that hang or fail at open never reach a DataLoader (data.probe_timeout)
        (train_index, val_index), self.excluded = S.probe_splits(
            cfg, [train_index, val_index], self.run_dir, info
        )
        self.labels = list(index.labels)
        if not len(train_index):
            raise TrainingError(f"{self.data} has no training clips; check the manifest's split column")
        self.model = S.build_model(cfg, self.labels)
        self.savld = S.build_savld(cfg, self.model, self.labels)
        self.model.set_savld(self.savld)
        if info.is_main:
            self.savld.save(self.run_dir / "savld.json")
            if not self.resume:
                (self.run_dir / "config.json").write_text(
                    json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8"
                )
        mcfg = self.model.config
        a = cfg.augment
        pre = ClipPreprocessor.from_model_config(mcfg, flip=a.flip, train_scale=list(a.train_scale))
        clip_s = cfg.clip_seconds or None
        dataset: Any = ClipDataset
        if cfg.data.frame_cache:  # decode each clip once (imd_core/train/frame_cache.py)
            from functools import partial

            from imd_core.train.frame_cache import FrameCacheDataset

            folder = (
                self.run_dir / "frame_cache" if cfg.data.frame_cache == "auto" else Path(cfg.data.frame_cache)
            )
            dataset = partial(FrameCacheDataset, cache_dir=folder, frame_grid=cfg.data.frame_grid)
        log = self.decode_log
        self.train_ds = dataset(
            train_index,
            pre,
            train=True,
            cross_modal_p=a.cross_modal_p,
            clip_seconds=clip_s,
            seed=cfg.seed,
            decode_log=log,
        )
        self.val_ds = (
            dataset(val_index, pre, train=False, clip_seconds=clip_s, decode_log=log)
            if len(val_index)
            else None
        )
        if self.val_ds is None:
            logger.warning("no validation clips: early stopping and best/ follow the training accuracy")
        self.skipped: dict[int, str] = {}
        pin = self.device.type == "cuda"
        self.loader, self.sampler, self.seeded = S.make_train_loader(
            self.train_ds, cfg, rank=info.rank, world_size=info.world_size, pin=pin
        )
        # Every rank validates whole batches of batch_size, round-robin (same batches as one process).
        self.val_loader = (
            S.make_eval_loader(
                self.val_ds,
                cfg.batch_size,
                cfg.num_workers,
                pin,
                rank=info.rank,
                world_size=info.world_size,
                timeout=cfg.data.loader_timeout,
            )
            if self.val_ds
            else None
        )
        self.model.to(self.device)
        self.ast_trainable = bool(mcfg.ast_trainable)
        self.cache = None
        if not self.ast_trainable:
            cache_dir = Path(cfg.ast_cache_dir) if cfg.ast_cache_dir else self.run_dir / "ast_cache"
            self.cache = ASTCache(cache_dir, tagger_id(self.model.ast.state_dict(), str(mcfg.ast_source)))
        micro = self.sampler.batches_per_epoch
        if cfg.max_steps_per_epoch:
            micro = min(micro, cfg.max_steps_per_epoch * cfg.grad_accum_steps)
        self.steps_per_epoch = micro // cfg.grad_accum_steps
        if self.steps_per_epoch < 1:
            raise TrainingError(
                f"{len(self.train_ds)} training clips make no full optimiser step of batch {cfg.batch_size} x "
                f"{cfg.grad_accum_steps} accumulation; lower --batch-size or grad_accum_steps"
            )
        self.micro_per_epoch = self.steps_per_epoch * cfg.grad_accum_steps
        self.optimizer = S.build_optimizer(self.model, cfg)
        self.scheduler = S.build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.progress: dict[str, Any] = {
            "best_value": None,
            "best_epoch": -1,
            "bad_epochs": 0,
            "elapsed_s": 0.0,
            "train_loss_sum": 0.0,
            "train_correct": 0,
            "train_count": 0,
        }
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        if self.state is not None:
            from imd_core.model.checkpoint import load_model

            weights = load_model(self.run_dir / "last", device="cpu").state_dict()
            self.model.load_state_dict(weights)
            self.optimizer.load_state_dict(self.state["optimizer"])
            self.scheduler.load_state_dict(self.state["scheduler"])
            self.epoch, self.batch_in_epoch, self.step = (
                self.state["epoch"],
                self.state["batch_in_epoch"],
                self.state["step"],
            )
            self.progress.update(self.state["progress"])
        self.wrapped: torch.nn.Module = self.model
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.wrapped = DDP(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # IMD gating leaves some parameters without gradient in some batches
                # (the no-audio token when every clip keeps its audio).
                find_unused_parameters=True,
            )
        if cfg.compile:  # forward + loss as one graph (fullgraph outside DDP; see compile_train_model)
            self.wrapped = compile_train_model(self.wrapped, fullgraph=not info.enabled)
        if info.is_main:
            self.csv = MetricsCsv(
                self.run_dir / "metrics.csv", keep_epochs_below=self.epoch if self.resume else None
            )
            self.tb = TensorBoardLog(self.run_dir / "tensorboard")
        if self.state is not None:
            set_rng_state(self.state["rng"])  # last: nothing after this may draw random numbers

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
        return self.base_elapsed + (time.time() - self.t0)

    def _improved(self, value: float) -> bool:
        best = self.progress["best_value"]
        if best is None:
            return True
        return value > best if self.cfg.early_stopping_metric == "val_top1" else value < best

    # ------------------------------------------------------------------ loop
    def _count_frames(self, batch: dict[str, Any]) -> None:
        self.frame_counts[0] += int(batch.get("frame_cache_hits", 0))
        self.frame_counts[1] += int(batch.get("frame_cache_misses", 0))

    def run(self) -> RunResult:
        self._prepare()
        self.stop.saving = True  # from here a first signal saves last/ at the next step
        self.dog.start()
        self.frame_counts = [0, 0]
        cfg, info = self.cfg, self.info
        self.base_elapsed = float(self.progress.get("elapsed_s", 0.0))
        self.t0 = time.time()
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
                train_clips=len(self.train_ds),
                val_clips=len(self.val_ds) if self.val_ds else 0,
                classes=list(self.labels),
                resumed=self.state is not None,
                start_epoch=self.epoch,
                start_step=self.step,
                excluded=[ev.Excluded(path=str(x.path), reason=x.reason) for x in self.excluded],
                class_transfer=ev.ClassTransfer(**transfer) if transfer else None,
            )
        )
        outcome = "completed"
        epochs_run = self.epoch
        for epoch in range(self.epoch, cfg.epochs):
            if not self._train_epoch(epoch, total_steps):
                outcome = "interrupted"
                break
            epochs_run = epoch + 1
            if self._end_epoch(epoch, total_steps):
                outcome = "early_stopped"
                break
            if any_flag(self.stop.requested, info, self.device):  # arrived during validation; last/ is saved
                outcome = "interrupted"
                break
        p = self.progress
        self.writer.write(
            ev.RunFinished(
                outcome=outcome,
                stopped=outcome == "interrupted",
                epochs_run=epochs_run,
                step=self.step,
                best_epoch=p["best_epoch"],
                best_metric=cfg.early_stopping_metric,
                best_value=p["best_value"],
                elapsed_s=self._elapsed(),
            )
        )
        if info.is_main:
            self.tb.close()
        return RunResult(outcome, epochs_run, self.step, p["best_epoch"], p["best_value"])

    def _precision_name(self) -> str:
        if self.device.type == "cuda" and self.cfg.precision in ("auto", "bf16"):
            return "bf16"
        return "bf16" if self.cfg.precision == "bf16" else "fp32"

    def _train_epoch(self, epoch: int, total_steps: int) -> bool:
        """One epoch from ``batch_in_epoch``; False when stopped by a signal (saved)."""
        cfg, info = self.cfg, self.info
        start = self.batch_in_epoch if epoch == self.epoch else 0
        if start == 0:
            self.progress.update(train_loss_sum=0.0, train_correct=0, train_count=0)
        self.sampler.set_epoch(epoch, start)
        self.seeded.epoch = epoch
        if self.cache is not None:
            self.cache.hits = self.cache.misses = 0
        self.frame_counts = [0, 0]
        self.model.train()
        accum = cfg.grad_accum_steps
        it = iter(self.dog.watch(self.loader, on_batch=self._count_frames))  # every wait bounded
        t_log, clips_log = time.time(), 0
        micro = start
        while micro < self.micro_per_epoch:
            # num_workers=0 loads in this process: keep the item seeding off the model's RNG.
            with isolated_rng() if cfg.num_workers == 0 else contextlib.nullcontext():
                batch = next(it)
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
                    cache=self.cache,
                    ast_trainable=self.ast_trainable,
                )
                (out.loss / accum).backward()
            for j, why in zip(batch["skipped"], batch["skipped_reasons"], strict=True):
                self.skipped[int(j)] = why
            n = int(batch["label"].shape[0])
            self.progress["train_loss_sum"] += float(out.loss.detach()) * n
            self.progress["train_correct"] += int(
                (out.logits.detach().argmax(-1).cpu() == batch["label"]).sum()
            )
            self.progress["train_count"] += n
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
                dt = max(1e-9, time.time() - t_log)
                lr = self.optimizer.param_groups[-1]["lr"]
                losses = {k: float(v) for k, v in (getattr(out, "losses", None) or {}).items()}
                self.writer.write(
                    ev.Step(
                        epoch=epoch,
                        step=self.step,
                        total_steps=total_steps,
                        loss=float(out.loss.detach()),
                        losses=losses,
                        lr=float(lr),
                        clips_per_s=clips_log / dt,
                    )
                )
                if info.is_main:
                    self.tb.scalars(
                        {
                            "train/loss": float(out.loss.detach()),
                            "train/lr": lr,
                            "train/clips_per_s": clips_log / dt,
                        },
                        self.step,
                    )
                t_log, clips_log = time.time(), 0
            stop_now = any_flag(self.stop.requested, info, self.device)
            periodic = cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0
            if (stop_now or periodic) and micro < self.micro_per_epoch:
                self._save_last(epoch, micro)
            elif stop_now:  # the epoch's last step: save as "start of the next epoch"
                self._save_last(epoch + 1, 0)
            if stop_now:
                self.writer_flush_stop()
                return False
        return True

    def writer_flush_stop(self) -> None:
        logger.warning("stopped by %s; resume with --resume", self.stop.signal_name or "a signal")

    def _end_epoch(self, epoch: int, total_steps: int) -> bool:
        """Validation, best/last checkpoints, metrics; True when early stopping triggers."""
        cfg, info, p = self.cfg, self.info, self.progress
        sums = [p["train_loss_sum"], float(p["train_correct"]), float(p["train_count"])]
        if info.enabled:  # every rank saw its own slice of each global batch
            t = torch.tensor(sums, dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(t)
            sums = t.tolist()
        count = max(1.0, sums[2])
        train_m = {
            "loss": sums[0] / count,
            "top1": sums[1] / count,
            "clips": int(sums[2]),
            "skipped": len(self.skipped),
        }
        stop_early = False
        # Every rank evaluates its share and gets the same gathered metrics (a collective).
        val = (
            evaluate(
                self.model,
                self.dog.watch(self.val_loader, on_batch=self._count_frames),
                device=self.device,
                precision=cfg.precision,
                cache=self.cache,
                dist=info,
            )
            if self.val_loader is not None
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
        cache_counts = None
        if self.cache is not None:
            counts = [self.cache.hits, self.cache.misses]
            if info.enabled:  # each rank counted its own training slices and validation batches
                t = torch.tensor(counts, dtype=torch.int64, device=self.device)
                torch.distributed.all_reduce(t)
                counts = t.tolist()
            cache_counts = {"hits": int(counts[0]), "misses": int(counts[1])}
        frame_counts = None
        if self.cfg.data.frame_cache:
            counts = list(self.frame_counts)
            if info.enabled:  # each rank's loaders counted their own items
                t = torch.tensor(counts, dtype=torch.int64, device=self.device)
                torch.distributed.all_reduce(t)
                counts = t.tolist()
            frame_counts = {"hits": int(counts[0]), "misses": int(counts[1])}
        if info.is_main:
            if cfg.early_stopping_metric == "val_loss" and val.get("loss") is not None:
                value = val["loss"]
            else:
                value = val.get("top1", train_m["top1"])
            improved = self._improved(value)
            if improved:
                p.update(best_value=value, best_epoch=epoch, bad_epochs=0)
            else:
                p["bad_epochs"] += 1
            stop_early = cfg.early_stopping_patience > 0 and p["bad_epochs"] >= cfg.early_stopping_patience
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
                {f"train/{k}": v for k, v in train_m.items()}
                | {f"val/{k}": v for k, v in val_summary.items()},
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
                    ast_cache=ev.CacheCounts(**cache_counts) if cache_counts else None,
                    frame_cache=ev.CacheCounts(**frame_counts) if frame_counts else None,
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
                self.writer.write(
                    ev.CheckpointSaved(kind="best", path=str(path), epoch=epoch, step=self.step)
                )
            self._save_last(epoch + 1, 0)
            if stop_early:
                self.writer.write(
                    ev.EarlyStopped(
                        epoch=epoch,
                        best_epoch=p["best_epoch"],
                        metric=cfg.early_stopping_metric,
                        best_value=p["best_value"],
                        patience=cfg.early_stopping_patience,
                    )
                )
        return broadcast_flag(stop_early, info, self.device)
