"""Fine-tune on the real backbones: I3D + YAMNet, a learned relevance net, fusion and a head.

``imd train`` comes here when the starting model is a pretrained folder (``kinetics400``
or one fine-tuned from it). Each clip's frozen features are computed once and cached in
``RUN/features/``; a small :class:`FeatureHead` then trains on the cache in seconds on a
CPU, and the best epoch becomes ``RUN/best``, a model folder like ``kinetics400``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from imd_core.config_base import FrozenConfig, parse_overrides
from imd_core.errors import ConfigError, DataError, ImdError
from imd_core.pretrained.feature_cache import FEATURE_KEYS, extract_features
from imd_core.pretrained.feature_head import FeatureHead
from imd_core.train import event_schema as ev

if TYPE_CHECKING:
    from imd_core.data.manifest import ClipEntry
    from imd_core.model.savld import Savld
    from imd_core.pretrained.i3d import I3D
    from imd_core.pretrained.kinetics400 import PretrainedIMD
    from imd_core.train.engine import StopRequest
    from imd_core.train.events import EventWriter

log = logging.getLogger(__name__)

OPTIONS_FILE = "finetune.json"  # the options and data of the run: what --resume continues
STATE_FILE = Path("last") / "training_state.pt"
EXIT_INTERRUPTED = 130


@dataclasses.dataclass(frozen=True)
class FinetuneOptions(FrozenConfig):
    """One fine-tuning run on a pretrained folder. ``base`` is its name or folder."""

    base: str = "kinetics400"
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    val_fraction: float = 0.2
    seed: int = 0
    relevance_weight: float = 1.0
    unfreeze: Literal["none", "video"] = "none"  # "video": I3D trains too (a GPU's job)
    backbone_lr: float = 1e-5
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        if not self.base:
            raise ConfigError("base: name the starting model (kinetics400 or a model folder)")
        if not 1 <= self.epochs <= 10_000 or not 1 <= self.batch_size <= 4096:
            raise ConfigError("epochs must be in [1, 10000] and batch size in [1, 4096]")
        for name in ("lr", "backbone_lr"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.weight_decay <= 1.0 or not 0.0 <= self.relevance_weight <= 100.0:
            raise ConfigError("weight_decay must be in [0, 1] and relevance_weight in [0, 100]")


# ``imd train --set`` keys that mean the same here as in the engine's TrainConfig, so the
# app's training tab and a user's shell speak one language; ``finetune.FIELD`` sets any field.
TRAIN_SET_KEYS = {
    "init.from_model": "base",
    "optim.lr": "lr",
    "optim.weight_decay": "weight_decay",
    "model.relevance_loss_weight": "relevance_weight",
    "seed": "seed",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "device": "device",
}


def options_from_overrides(options: FinetuneOptions, pairs: list[str]) -> FinetuneOptions:
    """Applies ``imd train --set`` pairs; a key that has no meaning here is refused."""
    mapped: dict[str, str] = {}
    for key, value in parse_overrides(pairs).items():
        name = TRAIN_SET_KEYS.get(key) or (
            key.removeprefix("finetune.") if key.startswith("finetune.") else None
        )
        if name is None or name not in FinetuneOptions.field_names():
            valid = sorted(TRAIN_SET_KEYS) + [f"finetune.{f}" for f in FinetuneOptions.field_names()]
            raise ConfigError(
                f"--set {key}: not a setting of fine-tuning on pretrained backbones; valid keys are {valid}"
            )
        mapped[name] = value
    return options.with_overrides(mapped)


def is_pretrained_base(name_or_folder: str) -> bool:
    """True when ``name_or_folder`` names a pretrained folder (``kinetics400`` or one built on it)."""
    from imd_core.pretrained.folder import is_pretrained_folder
    from imd_core.resources import resolve_model_dir

    try:
        return is_pretrained_folder(resolve_model_dir(name_or_folder))
    except ImdError:  # kinetics400 not built: the run itself says how to build it
        return str(name_or_folder) == "kinetics400"


def save_options(run_dir: Path, options: FinetuneOptions, data: str) -> None:
    path = run_dir / OPTIONS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"data": data, "options": options.to_dict()}, indent=1) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)


def load_options(run_dir: Path) -> tuple[FinetuneOptions, str]:
    path = run_dir / OPTIONS_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return FinetuneOptions.from_dict(saved["options"], where=str(path)), str(saved["data"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc}); start the run again without --resume") from None


# ----------------------------------------------------------------------------- the run
def finetune(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    options: FinetuneOptions = FinetuneOptions(),
    resume: bool = False,
    threads: int | None = None,
    events_stream: IO[str] | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) a fine-tuning run; returns the summary (``RUN/summary.json``).

    The summary's ``exit_code`` is 0 (finished) or 130 (stopped by SIGINT/SIGTERM after
    saving ``last/``). Raises :class:`ImdError` on bad data or settings (``run_failed`` is
    written first).
    """
    from imd_core.train.engine import StopRequest
    from imd_core.train.events import EventWriter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    events = EventWriter(out / "events.jsonl", events_stream, run=str(out))
    stop = StopRequest()
    # a signal sets a flag from the start: feature extraction stops between clips (each is
    # cached as it is done) and training after the epoch (last/ saved), both within a second
    stop.saving = True
    try:
        return _Run(Path(data), out, options, resume, threads, events, stop).run()
    except ImdError as exc:
        events.write(ev.RunFailed(reason=str(exc), error=type(exc).__name__))
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        events.write(ev.RunFailed(reason="stopped at once by a second interrupt; continue with --resume",
                               error="KeyboardInterrupt"))  # fmt: skip
        raise
    finally:
        stop.restore()
        events.close()


@dataclasses.dataclass
class _Run:
    """One run of :func:`finetune`: extract the features, then train the head on them."""

    data: Path
    out: Path
    options: FinetuneOptions
    resume: bool
    threads: int | None
    events: EventWriter
    stop: StopRequest
    t0: float = dataclasses.field(default_factory=time.time)

    def run(self) -> dict[str, Any]:
        from imd_core.data.manifest import load_dataset_index
        from imd_core.inference.predictor import Predictor
        from imd_core.pretrained.kinetics400 import PretrainedIMD

        o = self.options
        torch.manual_seed(o.seed)
        save_options(self.out, o, str(self.data.resolve()))
        index = load_dataset_index(
            self.data, split_ratios=(1.0 - o.val_fraction, o.val_fraction, 0.0), seed=o.seed
        )
        labels = list(index.labels)
        if len(labels) < 2:
            raise DataError(f"{self.data}: fine-tuning needs at least two classes, found {labels}")
        predictor = Predictor(o.base, device=o.device, threads=self.threads, batch_size=1, decode_workers=0)
        model = predictor.model
        if not isinstance(model, PretrainedIMD):
            raise ConfigError(f"{o.base} is not a pretrained folder (kinetics400 or one fine-tuned from it)")
        train_part, val_part = index.split("train"), index.split("val")
        segments = [(e.path, e.start, e.end) for e in train_part.entries + val_part.entries]

        def progress(done: int, total: int, cached: int) -> None:
            self.events.write(ev.Features(done=done, total=total, cached=cached))

        feats, excluded = extract_features(
            predictor, segments, self.out / "features", with_frames=o.unfreeze == "video",
            progress=progress, should_stop=lambda: self.stop.requested,
        )  # fmt: skip
        if self.stop.requested:
            return self._finish("interrupted", epochs_run=0, step=0, best=(None, None), summary_extra={})
        n_train = len(train_part.entries)
        sets = {
            "train": _stack(feats[:n_train], train_part.entries),
            "val": _stack(feats[n_train:], val_part.entries),
        }
        if sets["train"] is None:
            first = excluded[0]["path"] + ": " + excluded[0]["reason"] if excluded else "none found"
            raise DataError(f"{self.data}: no readable training clip ({first})")
        savld = model.savld if all(n in model.savld.mapping for n in labels) else None
        if savld is None:
            from imd_core.model.savld import Savld

            savld = Savld.build(labels, model.audio_labels)
        matrix = savld.matrix(labels, model.audio_labels)
        for part in sets.values():
            if part is not None:
                part["target"] = (model.savld_iou(part["tags"], part["labels"], matrix) > 0).float()
        return self._train(model, predictor.device, labels, sets, savld, excluded)

    # ------------------------------------------------------------------------- training
    def _train(self, model: PretrainedIMD, dev: torch.device, labels: list[str], sets: dict, savld: Savld,
               excluded: list[dict]) -> dict[str, Any]:  # fmt: skip
        o = self.options
        head = FeatureHead(len(labels))
        transfer = transfer_rows(model, head, labels)
        params = [{"params": head.parameters(), "lr": o.lr}]
        video = model.video if o.unfreeze == "video" else None
        if video is not None:
            video.eval()  # batch norm keeps its statistics: batches here are small
            video.requires_grad_(True)
            params.append({"params": video.parameters(), "lr": o.backbone_lr})
        head.to(dev)
        opt = torch.optim.AdamW(params, weight_decay=o.weight_decay)
        tr = sets["train"]
        n = len(tr["labels"])
        steps_per_epoch = math.ceil(n / o.batch_size)
        start_epoch, step, best_value, best_epoch = 0, 0, -1.0, -1
        best_state: dict[str, Any] = {}
        best_metrics: dict[str, Any] = {}
        state_path = self.out / STATE_FILE
        resumed = self.resume and state_path.is_file()
        if resumed:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            head.load_state_dict(state["head"])
            if video is not None:
                video.load_state_dict(state["video"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            start_epoch, step = state["epoch"], state["step"]
            best_value, best_epoch = state["best_value"], state["best_epoch"]
            best_state, best_metrics = state["best_state"], state["best_metrics"]
        elif self.resume:
            log.warning(
                "%s has no last/ state yet; training from the first epoch (features are reused)", self.out
            )
        self.events.write(ev.RunStarted(
            config=f"finetune:{o.base}", device=str(dev), precision="fp32", world_size=1,
            epochs=o.epochs, steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * o.epochs,
            train_clips=n, val_clips=0 if sets["val"] is None else len(sets["val"]["labels"]), classes=labels,
            resumed=resumed, start_epoch=start_epoch, start_step=step,
            excluded=[ev.Excluded(path=str(x["path"]), reason=x["reason"]) for x in excluded],
            class_transfer=ev.ClassTransfer(**transfer) if transfer else None,
        ))  # fmt: skip
        epoch = start_epoch
        outcome = "completed"
        for epoch in range(start_epoch, o.epochs):
            if self.stop.requested:
                outcome = "interrupted"
                break
            t_epoch = time.time()
            head.train()
            perm = torch.randperm(n)
            total, right = 0.0, 0
            for i in range(0, n, o.batch_size):
                idx = perm[i : i + o.batch_size]
                batch = {k: v[idx].to(dev) for k, v in tr.items()}
                v = video_features(video, batch) if video is not None else batch["video"]
                logits, rel, _ = head(v, batch["audio"], batch["present"], gate=batch["target"])
                ce = F.cross_entropy(logits, batch["labels"])
                mask = batch["present"]
                bce = (
                    F.binary_cross_entropy_with_logits(rel, batch["target"], reduction="none") * mask
                ).sum()
                loss = ce + o.relevance_weight * bce / mask.sum().clamp(min=1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                total += float(loss.detach()) * len(idx)
                right += int((logits.argmax(-1) == batch["labels"]).sum())
            # one step event per epoch: an epoch on cached features takes milliseconds
            self.events.write(ev.Step(epoch=epoch, step=step, total_steps=steps_per_epoch * o.epochs,
                                      loss=float(loss.detach()), losses={"ce": float(ce.detach())}, lr=float(o.lr),
                                      clips_per_s=n / max(time.time() - t_epoch, 1e-6)))  # fmt: skip
            metrics = evaluate(head, sets["val"] or tr, video, dev)
            improved = metrics["top1"] > best_value
            if improved:
                best_value, best_epoch, best_metrics = metrics["top1"], epoch, metrics
                best_state = {"head": _copy(head.state_dict())}
                if video is not None:
                    best_state["video"] = _copy(video.state_dict())
            elapsed = time.time() - self.t0
            done = epoch + 1 - start_epoch
            self.events.write(ev.Epoch(
                epoch=epoch, step=step, train=ev.TrainMetrics(loss=total / n, top1=right / n, clips=n, skipped=0),
                val=ev.ValMetrics(**metrics, skipped=0), best=improved, elapsed_s=elapsed,
                eta_s=(time.time() - t_epoch) * (o.epochs - epoch - 1) if done else None,
                ast_cache=None, frame_cache=None,
            ))  # fmt: skip
            self._save_state(
                head, video, opt, epoch + 1, step, best_value, best_epoch, best_state, best_metrics
            )
        else:
            epoch = o.epochs
        folder = None
        if best_state:
            from imd_core.pretrained.folder import save_finetuned

            head.load_state_dict(best_state["head"])
            if video is not None:
                video.load_state_dict(best_state["video"])
            folder = save_finetuned(model, head.cpu(), labels, savld, self.out / "best")
            self.events.write(ev.CheckpointSaved(kind="best", path=str(folder), epoch=best_epoch, step=step))
        summary = {
            "classes": labels, "train_clips": n, "val_clips": 0 if sets["val"] is None else len(sets["val"]["labels"]),
            "best_epoch": best_epoch, "val_top1": best_value if best_epoch >= 0 else None, "val": best_metrics,
            "excluded": [f"{x['path']}: {x['reason']}" for x in excluded], "model": str(folder) if folder else None,
            "class_transfer": transfer,
        }  # fmt: skip
        return self._finish(outcome, epochs_run=epoch - start_epoch, step=step, best=(best_epoch, best_value),
                            summary_extra=summary)  # fmt: skip

    def _save_state(self, head: FeatureHead, video: I3D | None, opt: torch.optim.Optimizer, epoch: int,
                    step: int, best_value: float, best_epoch: int, best_state: dict,
                    best_metrics: dict) -> None:  # fmt: skip
        state = {
            "head": head.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
            "epoch": epoch, "step": step, "best_value": best_value, "best_epoch": best_epoch,
            "best_state": best_state, "best_metrics": best_metrics,
        }  # fmt: skip
        if video is not None:
            state["video"] = video.state_dict()
        path = self.out / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:  # e.g. a full disk: the previous state stays whole
            tmp.unlink(missing_ok=True)
            raise ImdError(
                f"cannot save {path} ({exc}); free disk space and continue with --resume"
            ) from None
        # as the engine's: ``epoch`` is the one a resumed run continues in
        self.events.write(ev.CheckpointSaved(kind="last", path=str(path.parent), epoch=epoch, step=step))

    def _finish(self, outcome: str, *, epochs_run: int, step: int, best: tuple, summary_extra: dict) -> dict:
        if outcome == "interrupted":
            log.warning("stopped by %s; continue with --resume", self.stop.signal_name or "a signal")
        elapsed = round(time.time() - self.t0, 1)
        best_epoch, best_value = best
        summary = {**summary_extra, "outcome": outcome, "seconds": elapsed,
                   "exit_code": EXIT_INTERRUPTED if outcome == "interrupted" else 0}  # fmt: skip
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / "summary.json")
        found = best_epoch is not None and best_epoch >= 0  # before any epoch: -1 and the start value
        self.events.write(ev.RunFinished(outcome=outcome, stopped=outcome == "interrupted",
                                         epochs_run=epochs_run, step=step,
                                         best_epoch=best_epoch if found else -1, best_metric="val_top1",
                                         best_value=best_value if found else None, elapsed_s=elapsed))  # fmt: skip
        return summary


def _stack(feats: list[dict | None], entries: tuple[ClipEntry, ...]) -> dict[str, torch.Tensor] | None:
    keep = [(f, e.label_index) for f, e in zip(feats, entries, strict=True) if f is not None]
    if not keep:
        return None
    keys = FEATURE_KEYS + (("rgb",) if "rgb" in keep[0][0] else ())
    batch = {k: torch.stack([f[k] for f, _ in keep]) for k in keys}
    batch["labels"] = torch.tensor([i for _, i in keep])
    return batch


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def video_features(video: I3D, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """I3D's pooled features of cached frames ``(B, T, 3, H, W)`` fp16 (the unfrozen path)."""
    rgb = batch["rgb"].float().permute(0, 2, 1, 3, 4)  # I3D takes (B, 3, T, H, W)
    with torch.autocast(rgb.device.type, dtype=torch.bfloat16, enabled=rgb.device.type == "cuda"):
        return video.forward_features(rgb).float()


def transfer_rows(model: PretrainedIMD, head: FeatureHead, labels: list[str]) -> dict[str, list[str]] | None:
    """Starts each known class from the starting model's own row (matched by name, any case).

    From ``kinetics400`` (the rule head): a class named as a Kinetics-400 action starts its
    video row from I3D's classifier. From a fine-tuned folder: its video and audio rows and
    its whole relevance net. Returns ``{"kept", "new"}`` (``None`` when nothing matched).
    """
    known = {name.lower(): i for i, name in enumerate(model.labels)}
    kept = [name for name in labels if name.lower() in known]
    if not kept:
        return None
    with torch.no_grad():
        if model.head is not None:
            head.relevance.load_state_dict(model.head.relevance.state_dict())
        for j, name in enumerate(labels):
            i = known.get(name.lower())
            if i is None:
                continue
            if model.head is not None:
                for mine, theirs in ((head.video_head[1], model.head.video_head[1]),
                                     (head.audio_head[1], model.head.audio_head[1])):  # fmt: skip
                    mine.weight[j] = theirs.weight[i]
                    mine.bias[j] = theirs.bias[i]
            else:
                conv = model.video.Logits.Conv3d_0c_1x1.conv
                head.video_head[1].weight[j] = conv.weight.flatten(1)[i]
                head.video_head[1].bias[j] = conv.bias[i]
    new = [name for name in labels if name.lower() not in known]
    log.info("classes kept from %s: %s; new: %s", model.config.name, kept, new)
    return {"kept": kept, "new": new}


@torch.no_grad()
def evaluate(head: FeatureHead, batch: dict[str, torch.Tensor], video: I3D | None = None,
             device: torch.device | str = "cpu") -> dict[str, float | None]:  # fmt: skip
    """Top-1/top-5, mean class accuracy, relevance accuracy and drop rate of ``batch``."""
    head.eval()
    b = {k: v.to(device) for k, v in batch.items()}
    if video is not None:
        b["video"] = torch.cat(
            [video_features(video, {"rgb": b["rgb"][i : i + 8]}) for i in range(0, len(b["rgb"]), 8)]
        )
    logits, rel, gate = head(b["video"], b["audio"], b["present"])
    labels = b["labels"]
    pred = logits.argmax(-1)
    k = min(5, logits.shape[-1])
    top5 = (logits.topk(k, -1).indices == labels.unsqueeze(-1)).any(-1)
    classes = labels.unique()
    present = b["present"].bool()
    right = ((torch.sigmoid(rel) >= 0.5).float() == b["target"])[present]
    return {
        "clips": len(labels),
        "loss": float(F.cross_entropy(logits, labels)),
        "top1": float((pred == labels).float().mean()),
        "top5": float(top5.float().mean()),
        "mean_class_accuracy": float(
            torch.stack([(pred[labels == c] == c).float().mean() for c in classes]).mean()
        ),
        "relevance_accuracy": float(right.float().mean()) if present.any() else None,
        "audio_drop_rate": float(1 - gate[present].mean()) if present.any() else None,
    }
