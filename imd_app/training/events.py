"""Reading a run's JSON-lines events and folding them into progress and metrics.

A live job and a job found again after a restart (reattach) are read by the same
:class:`EventTail` and :class:`RunProgress`, which use only the field names of
:mod:`imd_core.train.event_schema`. Qt-free.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from imd_core.train import event_schema as ev

logger = logging.getLogger(__name__)


class EventTail:
    """Reads new complete lines of a growing JSON-lines file, from where it left off.

    Args:
        path: the file; it may not exist yet (the child process creates it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def read_new(self) -> tuple[list[ev.AnyEvent], list[str]]:
        """Returns ``(events, other_lines)`` appended since the last call.

        A JSON line that is not an event of the schema goes to ``other_lines`` (and the
        log), as any other text would: the job's log shows it, progress ignores it.
        """
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            logger.warning("cannot read %s: %s", self.path, exc)
            return [], []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for its newline
        events: list[ev.AnyEvent] = []
        other: list[str] = []
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                other.append(text)
                continue
            if not isinstance(obj, dict):  # JSON, but not an object: plain text to the log
                other.append(text)
                continue
            try:
                events.append(ev.parse_event(obj))
            except ev.EventSchemaError as exc:
                logger.warning("%s: %s", self.path, exc)
                other.append(text)
        return events, other


@dataclass
class EpochRecord:
    """The metrics of one finished epoch (``None`` where the engine gave none)."""

    epoch: float
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    relevance_acc: float | None = None
    audio_drop_rate: float | None = None


@dataclass
class RunProgress:
    """Everything the monitor shows, folded from events in order.

    ``apply`` returns a short human line for the log tail (or ``""``).
    """

    total_epochs: int | None = None
    total_steps: int | None = None
    steps_per_epoch: int | None = None
    step: int = 0
    epoch: float = 0.0
    started_at: float | None = None
    start_fraction: float = 0.0  # progress already done when this attempt started (resume)
    last_event_at: float | None = None
    clips_per_s: float | None = None
    lr: float | None = None
    eta_s: float | None = None
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    features: tuple[int, int] | None = None  # (done, total) while frozen features are computed
    outcome: str = ""  # "", "finished", "failed", "early_stopped", "stopped"
    failure: str = ""
    started_runs: int = 0

    def apply(self, event: ev.AnyEvent) -> str:
        now = event.time or time.time()
        self.last_event_at = now
        if isinstance(
            event, ev.Features
        ):  # fine-tuning on pretrained backbones: decoding + frozen features first
            self.features = (event.done, event.total)
            if event.done in (1, event.total) or event.done % 10 == 0:
                return f"features {event.done}/{event.total} ({event.cached} from the cache)"
            return ""
        if isinstance(event, ev.RunStarted):
            self.features = None
            self.started_runs += 1
            self.started_at = now
            self.outcome = ""
            self.total_epochs, self.steps_per_epoch = event.epochs, event.steps_per_epoch
            self.total_steps = event.total_steps
            self.step = event.start_step
            self.start_fraction = self.fraction
            return f"run started: {event.epochs} epochs, {event.total_steps} steps"
        if isinstance(event, ev.Step):
            self.step, self.epoch = event.step, float(event.epoch)
            self.total_steps = event.total_steps or self.total_steps
            if event.loss is not None:
                self.step_losses.append((self.step, event.loss))
            self.lr, self.clips_per_s = event.lr, event.clips_per_s
            self.eta_s = self._estimate_eta(now)
            return ""
        if isinstance(event, ev.Epoch):
            val = event.val
            record = EpochRecord(
                epoch=float(event.epoch), train_loss=event.train.loss, train_acc=event.train.top1,
                val_loss=val.loss if val else None, val_acc=val.top1 if val else None,
                relevance_acc=val.relevance_accuracy if val else None, audio_drop_rate=val.audio_drop_rate if val else None,
            )  # fmt: skip
            self.epochs = [e for e in self.epochs if e.epoch < record.epoch] + [record]
            self.epoch = record.epoch
            self.eta_s = event.eta_s if event.eta_s is not None else self._estimate_eta(now)
            if event.best:  # the engine's decision, under whichever early_stopping_metric it follows
                self.best = {k: v for k, v in vars(record).items() if v is not None}
            parts = [
                f"{name} {value:.4g}"
                for name, value in vars(record).items()
                if name != "epoch" and value is not None
            ]
            return f"epoch {event.epoch + 1}: " + ", ".join(parts)  # people count from 1
        if isinstance(event, ev.CheckpointSaved):
            self.checkpoints.append(event.path)
            return f"checkpoint saved {event.path}"
        if isinstance(event, ev.EarlyStopped):
            self.outcome = "early_stopped"
            return f"early stopped: no improvement of {event.metric} in {event.patience} epochs (best: epoch {event.best_epoch + 1})"
        if isinstance(event, ev.RunFinished):
            # ``outcome`` is "completed", "early_stopped" or "interrupted" (Stop / a signal)
            self.outcome = "stopped" if event.stopped else "finished"
            self.eta_s = None if event.stopped else 0.0
            return "run stopped (saved last/)" if event.stopped else f"run finished ({event.outcome})"
        if isinstance(event, ev.RunFailed):
            self.outcome = "failed"
            self.failure = event.reason or event.error or "unknown reason"
            return f"run failed: {self.failure}"
        return ""

    @property
    def phase(self) -> str:
        """What the progress bar says before training starts (``""`` once it has)."""
        return f"features {self.features[0]}/{self.features[1]}" if self.features else ""

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        if self.outcome == "finished":
            return 1.0
        if self.total_steps:
            return min(1.0, self.step / self.total_steps)
        if self.total_epochs:
            return min(1.0, self.epoch / self.total_epochs)
        return 0.0

    def _estimate_eta(self, now: float) -> float | None:
        frac = self.fraction
        done = frac - self.start_fraction
        if self.started_at is None or done <= 0.0:
            return None
        return max(0.0, (now - self.started_at) * (1.0 - frac) / done)


def format_eta(seconds: float | None) -> str:
    """``3725`` -> ``"1:02:05"``; ``None`` -> ``"--"``."""
    if seconds is None:
        return "--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
