"""The training events: one frozen dataclass per event type, written and read as JSON lines.

A missing or misspelled field is a ``TypeError`` where the event is built. The table in
docs/TRAINING.md is :func:`markdown_table` (a test keeps them equal;
``python -m imd_core.train.event_schema`` prints it). Lines without ``v`` (older runs)
read as version 0; fields a later version adds are ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

SCHEMA_VERSION = 1

Metric = Literal["val_top1", "val_loss"]


def _doc(text: str) -> Any:
    """A required field with its meaning (the docs table's last column)."""
    return field(metadata={"doc": text})


# ------------------------------------------------------------------ nested objects
@dataclass(frozen=True, kw_only=True)
class Excluded:
    path: str = _doc("the file")
    reason: str = _doc("why it was left out")


@dataclass(frozen=True, kw_only=True)
class ClassTransfer:
    kept: list[str] = _doc("classes of the starting model that keep their head rows (matched by name)")
    new: list[str] = _doc("classes the starting model did not have")


@dataclass(frozen=True, kw_only=True)
class CacheCounts:
    hits: int = _doc("lookups answered by the cache")
    misses: int = _doc("lookups computed")


@dataclass(frozen=True, kw_only=True)
class TrainMetrics:
    loss: float | None = _doc("mean training loss of the epoch")
    top1: float | None = _doc("training top-1 accuracy of the epoch")
    clips: int = _doc("clips trained on")
    skipped: int = _doc("unusable clips left out so far")


@dataclass(frozen=True, kw_only=True)
class ValMetrics:
    loss: float | None = _doc("validation loss (null for a pretrained-backbone model)")
    top1: float | None = _doc("top-1 accuracy")
    top5: float | None = _doc("top-5 accuracy")
    mean_class_accuracy: float | None = _doc("mean of the per-class accuracies")
    relevance_accuracy: float | None = _doc("relevance decisions matching the SAVLD target, clips with audio")
    audio_drop_rate: float | None = _doc("share of clips with audio whose audio was dropped")
    clips: int = _doc("clips evaluated")
    skipped: int = _doc("unusable clips left out")


# ------------------------------------------------------------------------ events
@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields of every event; the writer fills ``time`` and ``run``."""

    event_type: ClassVar[str] = ""
    v: int = field(default=SCHEMA_VERSION, metadata={"doc": "schema version (absent before typed events: 0)"})
    time: float = field(default=0.0, metadata={"doc": "Unix seconds"})
    run: str = field(default="", metadata={"doc": "the run folder"})


@dataclass(frozen=True, kw_only=True)
class Features(Event):
    """Fine-tuning on pretrained backbones only, before ``run_started``: one per clip whose frozen features are ready."""

    event_type: ClassVar[str] = "features"
    done: int = _doc("clips whose features are ready")
    total: int = _doc("clips in all")
    cached: int = _doc("of ``done``, read from ``RUN/features/``")


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """Training starts (after the probe, and after ``features``)."""

    event_type: ClassVar[str] = "run_started"
    config: str = _doc("recipe name (``finetune:BASE`` from a pretrained folder)")
    device: str = _doc("torch device")
    precision: Literal["bf16", "fp32"] = _doc("autocast precision")
    world_size: int = _doc("processes (DDP)")
    epochs: int = _doc("epochs of the whole run")
    steps_per_epoch: int = _doc("optimiser steps per epoch")
    total_steps: int = _doc("optimiser steps of the whole run")
    train_clips: int = _doc("training clips (after the probe)")
    val_clips: int = _doc("validation clips (after the probe)")
    classes: list[str] = _doc("class names, in head order")
    resumed: bool = _doc("continued from ``last/``")
    start_epoch: int = _doc("epoch it starts in (0-based)")
    start_step: int = _doc("optimiser steps already done")
    excluded: list[Excluded] = _doc(
        "files the probe left out, and files whose decode an earlier attempt had to stop (a hang, a crash)"
    )
    class_transfer: ClassTransfer | None = _doc(
        "when the starting model has other classes or another order; null otherwise"
    )


@dataclass(frozen=True, kw_only=True)
class Step(Event):
    """Every ``log_every_steps`` optimiser steps (one per epoch from a pretrained folder)."""

    event_type: ClassVar[str] = "step"
    epoch: int = _doc("epoch (0-based)")
    step: int = _doc("optimiser steps so far")
    total_steps: int = _doc("optimiser steps of the whole run")
    loss: float | None = _doc("loss of the last batch")
    losses: dict[str, float | None] = _doc("its components (``ce``, ``relevance_bce``)")
    lr: float = _doc("learning rate (last parameter group)")
    clips_per_s: float = _doc("training throughput since the last step event, all processes")


@dataclass(frozen=True, kw_only=True)
class Epoch(Event):
    """After each epoch's validation."""

    event_type: ClassVar[str] = "epoch"
    epoch: int = _doc("epoch (0-based)")
    step: int = _doc("optimiser steps so far")
    train: TrainMetrics = _doc("training metrics of the epoch")
    val: ValMetrics | None = _doc("validation metrics; null without a validation split")
    best: bool = _doc("this epoch improved ``early_stopping_metric`` (``best/`` was saved)")
    elapsed_s: float = _doc("training seconds so far, earlier attempts included")
    eta_s: float | None = _doc("estimated seconds left")
    ast_cache: CacheCounts | None = _doc(
        "AST output cache lookups of the epoch, training and validation; null when not cached"
    )
    frame_cache: CacheCounts | None = _doc(
        "decoded-frame cache lookups of the epoch, summed over workers and ranks; null without ``data.frame_cache``"
    )


@dataclass(frozen=True, kw_only=True)
class CheckpointSaved(Event):
    """A checkpoint folder is complete on disk."""

    event_type: ClassVar[str] = "checkpoint_saved"
    kind: Literal["last", "best"] = _doc("which checkpoint")
    path: str = _doc("the folder")
    epoch: int = _doc("for ``last``: the epoch a resumed run continues in; for ``best``: the best epoch")
    step: int = _doc("optimiser steps so far")


@dataclass(frozen=True, kw_only=True)
class EarlyStopped(Event):
    """``early_stopping_patience`` epochs without improvement; ``run_finished`` follows."""

    event_type: ClassVar[str] = "early_stopped"
    epoch: int = _doc("the last epoch (0-based)")
    best_epoch: int = _doc("the best epoch (0-based)")
    metric: Metric = _doc("``early_stopping_metric``")
    best_value: float | None = _doc("its best value")
    patience: int = _doc("``early_stopping_patience``")


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The run ended normally: completed, stopped early, or stopped by a signal after saving ``last/``."""

    event_type: ClassVar[str] = "run_finished"
    outcome: Literal["completed", "early_stopped", "interrupted"] = _doc("how it ended")
    stopped: bool = _doc(
        "stopped by a signal or the app (``outcome`` is ``interrupted``); ``--resume`` continues"
    )
    epochs_run: int = _doc("epochs finished")
    step: int = _doc("optimiser steps done")
    best_epoch: int = _doc("the best epoch (0-based; -1 when none finished)")
    best_metric: Metric = _doc("the metric ``best`` follows")
    best_value: float | None = _doc("its best value")
    elapsed_s: float = _doc("training seconds, earlier attempts included")
    reason: str | None = field(
        default=None, metadata={"doc": "why it stopped before training; null otherwise"}
    )


@dataclass(frozen=True, kw_only=True)
class RunFailed(Event):
    """The run failed; ``--resume`` continues from ``last/``."""

    event_type: ClassVar[str] = "run_failed"
    reason: str = _doc("one line that says what to do")
    error: str = _doc("exception type")


EVENT_CLASSES: dict[str, type[Event]] = {
    c.event_type: c
    for c in (Features, RunStarted, Step, Epoch, CheckpointSaved, EarlyStopped, RunFinished, RunFailed)
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)
AnyEvent = Features | RunStarted | Step | Epoch | CheckpointSaved | EarlyStopped | RunFinished | RunFailed


class EventSchemaError(ValueError):
    """A line that is not an event of this schema (unknown type, or a required field missing)."""


def to_record(event: Event) -> dict[str, Any]:
    """The JSON object of one event: ``event`` first, then the common and own fields."""
    return {"event": event.event_type, **dataclasses.asdict(event)}


def parse_event(record: dict[str, Any]) -> AnyEvent:
    """Builds the typed event of one parsed JSON line.

    Tolerant where that is cheap: a line without ``v`` (written before typed events) is
    version 0, and fields this version does not know (a newer engine) are ignored.

    Raises:
        EventSchemaError: an unknown ``event`` type, or a required field missing.
    """
    cls = EVENT_CLASSES.get(str(record.get("event")))
    if cls is None:
        raise EventSchemaError(
            f"unknown event type {record.get('event')!r}; valid types are {list(EVENT_TYPES)}"
        )
    try:
        return _build(cls, {"v": 0, **record})  # type: ignore[return-value]
    except (TypeError, ValueError) as exc:
        raise EventSchemaError(f"{cls.event_type} event: {exc}") from None


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {f.name: _value(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)


def _value(tp: Any, value: Any) -> Any:
    """``value`` as ``tp``: dicts become the nested dataclasses; everything else stays."""
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return _build(tp, value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType) and isinstance(value, dict):
        for arg in args:
            if dataclasses.is_dataclass(arg):
                return _build(arg, value)
    if origin is list and isinstance(value, list) and args and dataclasses.is_dataclass(args[0]):
        return [_value(args[0], item) for item in value]
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=globals())


def check_record(record: dict[str, Any]) -> list[str]:
    """Every way one written JSON object breaks the schema (``[]`` when it follows it).

    Strict, for tests: the type of every field, no missing and no unknown fields, and
    ``v`` equal to :data:`SCHEMA_VERSION`.
    """
    cls = EVENT_CLASSES.get(str(record.get("event")))
    if cls is None:
        return [f"unknown event type {record.get('event')!r}"]
    problems = _check_fields(cls, {k: v for k, v in record.items() if k != "event"}, cls.event_type)
    if record.get("v") != SCHEMA_VERSION:
        problems.append(f"{cls.event_type}.v is {record.get('v')!r}, not {SCHEMA_VERSION}")
    return problems


def _check_fields(cls: type, data: dict[str, Any], where: str) -> list[str]:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    problems = [f"{where}: unknown field {k!r}" for k in data if k not in names]
    for name in names:
        if name not in data:
            problems.append(f"{where}: missing field {name!r}")
        else:
            problems += _check_value(hints[name], data[name], f"{where}.{name}")
    return problems


def _check_value(tp: Any, value: Any, where: str) -> list[str]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        results = [_check_value(arg, value, where) for arg in args]
        return [] if any(not r for r in results) else min(results, key=len)
    if tp is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if origin is Literal:
        return [] if value in args else [f"{where}: {value!r} is not one of {list(args)}"]
    if dataclasses.is_dataclass(tp):
        return (
            _check_fields(tp, value, where)
            if isinstance(value, dict)
            else [f"{where}: {value!r} is not an object"]
        )
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [p for i, item in enumerate(value) for p in _check_value(args[0], item, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        return [p for k, item in value.items() for p in _check_value(args[1], item, f"{where}.{k}")]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float))
        and not isinstance(value, bool),  # JSON writes 2.0 as 2.0, 2 as 2
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        return [f"{where}: the schema has an unsupported type {tp!r}"]
    return [] if ok else [f"{where}: {value!r} is not {tp.__name__}"]


# ------------------------------------------------------------------- docs table
def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " / ".join(f"`{a}`" for a in args)
    if dataclasses.is_dataclass(tp):
        return "object"
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"object of {_type_name(args[1])}"
    return {bool: "bool", int: "int", float: "number", str: "string"}[tp]


def _rows(cls: type, prefix: str) -> list[tuple[str, str, str]]:
    hints = _hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if cls is not Event and f.name in {g.name for g in dataclasses.fields(Event)}:
            continue
        tp = hints[f.name]
        doc = f.metadata["doc"].replace("``", "`")
        rows.append((f"{prefix}{f.name}", _type_name(tp), doc))
        nested = [a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)]
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            rows += _rows(typing.get_args(tp)[0], f"{prefix}{f.name}[].")
        elif nested:
            rows += _rows(nested[0], f"{prefix}{f.name}.")
    return rows


def markdown_table() -> str:
    """The events table of docs/TRAINING.md: one row per event, then one per field."""
    lines = ["| event | field | type | meaning |", "|---|---|---|---|"]
    lines.append("| every event | `event` | string | the event type (this table's first column) |")
    lines += [f"| every event | `{n}` | {t} | {d} |" for n, t, d in _rows(Event, "")]
    for name, cls in EVENT_CLASSES.items():
        lines.append(f"| `{name}` | | | {(cls.__doc__ or '').strip().replace('``', '`')} |")
        lines += [f"| | `{n}` | {t} | {d} |" for n, t, d in _rows(cls, "")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")  # noqa: T201 - the docs generator
