"""Reading a run's JSON-lines events and folding them into progress and metrics.

The engine (``imd train --events -``) writes one JSON object per line: ``run_started``,
``step``, ``epoch``, ``checkpoint_saved``, ``early_stopped``, ``run_finished`` and
``run_failed``. The app reads them from the job's stdout file while it runs and from the
same file after a restart (reattach), so both paths share :class:`EventTail` and
:class:`RunProgress`. Qt-free.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TERMINAL_EVENTS = ("run_finished", "run_failed")

# Candidate names of each metric in an ``epoch`` event, flattened with dots (the first
# one present wins). One table, so an engine rename is a one-line change.
EPOCH_METRICS: dict[str, tuple[str, ...]] = {
    "train_loss": ("train.loss", "train_loss"),
    "train_acc": ("train.top1", "train.accuracy", "train_top1", "train_acc"),
    "val_loss": ("val.loss", "val_loss"),
    "val_acc": ("val.top1", "val.accuracy", "val_top1", "val_acc"),
    "relevance_acc": ("val.relevance_accuracy", "val.relevance_acc", "relevance_accuracy", "train.relevance_accuracy"),
    "audio_drop_rate": ("val.audio_drop_rate", "audio_drop_rate", "train.audio_drop_rate"),
}


def event_name(event: dict[str, Any]) -> str:
    """The kind of an event (``step``, ``epoch``, ...), or ``""``."""
    return str(event.get("event") or event.get("type") or "")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"val": {"top1": 0.5}}`` -> ``{"val.top1": 0.5}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def pick(flat: dict[str, Any], names: tuple[str, ...]) -> float | None:
    """The first numeric value among ``names`` in a flattened event."""
    for name in names:
        value = flat.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


class EventTail:
    """Reads new complete lines of a growing JSON-lines file, from where it left off.

    Args:
        path: the file; it may not exist yet (the child process creates it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def read_new(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Returns ``(events, other_lines)`` appended since the last call."""
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
        events: list[dict[str, Any]] = []
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
            if isinstance(obj, dict) and event_name(obj):
                events.append(obj)
            else:
                other.append(text)
        return events, other


def read_tail_lines(path: str | Path, max_lines: int = 200, max_bytes: int = 64_000) -> list[str]:
    """The last lines of a text file (a job's stderr log), or ``[]``."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-max_lines:]


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

    def apply(self, event: dict[str, Any]) -> str:
        kind = event_name(event)
        flat = flatten({k: v for k, v in event.items() if k not in ("event", "type")})
        now = float(event.get("time") or event.get("t") or time.time())
        self.last_event_at = now
        if kind == "features":  # fine-tuning on pretrained backbones: decoding + frozen features first
            done, total = _int(pick(flat, ("done",))) or 0, _int(pick(flat, ("total",))) or 0
            self.features = (done, total)
            if done in (1, total) or done % 10 == 0:
                return f"features {done}/{total} ({_int(pick(flat, ('cached',))) or 0} from the cache)"
            return ""
        if kind == "run_started":
            self.features = None
            self.started_runs += 1
            self.started_at = now
            self.outcome = ""
            self.total_epochs = _int(pick(flat, ("epochs", "total_epochs", "totals.epochs"))) or self.total_epochs
            self.steps_per_epoch = _int(pick(flat, ("steps_per_epoch", "totals.steps_per_epoch"))) or self.steps_per_epoch
            self.total_steps = _int(pick(flat, ("total_steps", "steps", "totals.steps", "totals.total_steps")))
            if self.total_steps is None and self.total_epochs and self.steps_per_epoch:
                self.total_steps = self.total_epochs * self.steps_per_epoch
            start_step = _int(pick(flat, ("step", "start_step", "global_step")))
            if start_step is not None:
                self.step = start_step
            self.start_fraction = self.fraction
            return f"run started: {self.total_epochs or '?'} epochs, {self.total_steps or '?'} steps"
        if kind == "step":
            step = _int(pick(flat, ("step", "global_step")))
            self.step = step if step is not None else self.step + 1
            epoch = pick(flat, ("epoch",))
            self.epoch = self.epoch if epoch is None else epoch
            loss = pick(flat, ("loss", "train.loss", "losses.total"))
            if loss is not None:
                self.step_losses.append((self.step, loss))
            self.lr = pick(flat, ("lr",)) or self.lr
            self.clips_per_s = pick(flat, ("clips_per_s", "clips_per_sec", "throughput")) or self.clips_per_s
            self.eta_s = pick(flat, ("eta_s", "eta")) if pick(flat, ("eta_s", "eta")) is not None else self._estimate_eta(now)
            return ""
        if kind == "epoch":
            number = pick(flat, ("epoch",))
            record = EpochRecord(epoch=float(len(self.epochs)) if number is None else number)
            for name, candidates in EPOCH_METRICS.items():
                setattr(record, name, pick(flat, candidates))
            self.epochs = [e for e in self.epochs if e.epoch < record.epoch] + [record]
            self.epoch = record.epoch
            eta = pick(flat, ("eta_s", "eta"))
            self.eta_s = eta if eta is not None else self._estimate_eta(now)
            if record.val_acc is not None and record.val_acc > self.best.get("val_acc", -1.0):  # as the engine: strictly better
                self.best = {k: v for k, v in vars(record).items() if v is not None}
            parts = [f"{name} {getattr(record, name):.4g}" for name in EPOCH_METRICS if getattr(record, name) is not None]
            return f"epoch {record.epoch + 1:g}: " + ", ".join(parts)  # people count from 1
        if kind == "checkpoint_saved":
            where = str(event.get("path") or event.get("kind") or event.get("name") or "")
            self.checkpoints.append(where)
            return f"checkpoint saved {where}".rstrip()
        if kind == "early_stopped":
            self.outcome = "early_stopped"
            return "early stopped: " + str(event.get("reason") or f"no improvement at epoch {_human_epoch(event.get('epoch'))}")
        if kind == "run_finished":
            # ``outcome`` is "completed", "early_stopped" or "interrupted" (Stop / a signal);
            # ``stopped`` is true for the latter.
            stopped = event.get("stopped") in (True, "interrupted") or event.get("outcome") == "interrupted"
            self.outcome = "stopped" if stopped else "finished"
            self.eta_s = None if stopped else 0.0
            metric, value = event.get("best_metric"), event.get("best_value")
            if isinstance(metric, str) and isinstance(value, (int, float)):
                self.best.setdefault(metric, float(value))
            return "run stopped (saved last/)" if stopped else f"run finished ({event.get('outcome', 'completed')})"
        if kind == "run_failed":
            self.outcome = "failed"
            self.failure = str(event.get("reason") or event.get("error") or event.get("message") or "unknown reason")
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


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def format_eta(seconds: float | None) -> str:
    """``3725`` -> ``"1:02:05"``; ``None`` -> ``"--"``."""
    if seconds is None:
        return "--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _human_epoch(epoch: object) -> str:
    """Events count epochs from 0; everything a person reads counts from 1."""
    return str(epoch + 1) if isinstance(epoch, int) else "?"
