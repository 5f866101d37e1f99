"""JSON-lines events of a training run.

Every event is one JSON object on one line, flushed as soon as it is written, so a
parent process (the app's training tab runs ``imd train ... --events -`` as a
``QProcess``) can parse stdout line by line. Every event has ``event`` (its type),
``time`` (Unix seconds) and ``run`` (the run folder). The types and their fields:

- ``features`` (fine-tuning on pretrained backbones only, before ``run_started``): ``done``,
  ``total`` clips whose frozen features are ready, ``cached`` (of them, read from the cache).
- ``run_started``: ``config`` (name), ``device``, ``precision``, ``world_size``,
  ``epochs``, ``steps_per_epoch``, ``total_steps``, ``train_clips``, ``val_clips``,
  ``classes``, ``resumed`` (bool), ``start_epoch``, ``start_step``, ``excluded``
  (``path``, ``reason`` of each file left out: by the probe, or after a mid-stream hang),
  ``class_transfer`` (``kept``, ``new`` class names when fine-tuning a model folder
  whose classes differ or come in another order; null otherwise).
- ``step``: ``epoch`` (0-based), ``step`` (optimiser steps so far), ``total_steps``,
  ``loss``, ``losses`` (component losses), ``lr``, ``clips_per_s``.
- ``epoch``: ``epoch``, ``step``, ``train`` (``loss``, ``top1``, ``clips``,
  ``skipped``), ``val`` (``loss``, ``top1``, ``top5``, ``mean_class_accuracy``,
  ``relevance_accuracy``, ``audio_drop_rate``), ``best`` (bool), ``elapsed_s``,
  ``eta_s``, ``ast_cache`` (``hits``, ``misses`` of the epoch; None if not cached),
  ``frame_cache`` (``hits``, ``misses`` of the decoded-frame cache in the epoch,
  training and validation; None without ``data.frame_cache``).
- ``checkpoint_saved``: ``kind`` (``last`` or ``best``), ``path``, ``epoch``, ``step``.
- ``early_stopped``: ``epoch``, ``best_epoch``, ``metric``, ``best_value``,
  ``patience``.
- ``run_finished``: ``epochs_run``, ``step``, ``best_epoch``, ``best_metric``,
  ``best_value``, ``stopped`` (``completed``, ``early_stopped`` or ``interrupted``),
  ``elapsed_s``.
- ``run_failed``: ``reason`` (one line), ``error`` (exception type; ``LoaderHang`` when
  a decode hung mid-stream: the reason names the file).
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import IO, Any, Literal

EventType = Literal[
    "features", "run_started", "step", "epoch", "checkpoint_saved", "early_stopped", "run_finished", "run_failed"
]
EVENT_TYPES: tuple[str, ...] = (
    "features",
    "run_started",
    "step",
    "epoch",
    "checkpoint_saved",
    "early_stopped",
    "run_finished",
    "run_failed",
)


def _clean(value: Any) -> Any:
    """Makes a value JSON-safe: NaN/inf become None, tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    return value


class EventWriter:
    """Appends events to ``events.jsonl`` and optionally to a stream (stdout).

    Only rank 0 of a distributed run writes events; other ranks get a writer with
    ``enabled=False``.
    """

    def __init__(self, path: Path | None, stream: IO[str] | None = None, *, run: str = "", enabled: bool = True):
        self.path = path
        self.stream = stream
        self.run = run
        self.enabled = enabled
        self._file = None
        self._lock = threading.Lock()  # the loader watchdog's thread may write the last event
        if enabled and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def emit(self, event: EventType, **fields: Any) -> dict[str, Any]:
        """Writes one event line (flushed) and returns the event mapping."""
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event!r}; valid types are {list(EVENT_TYPES)}")
        record = {"event": event, "time": round(time.time(), 3), "run": self.run, **_clean(fields)}
        if not self.enabled:
            return record
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        # bounded: the watchdog's last event must go out even if the stuck thread holds it
        got = self._lock.acquire(timeout=10)
        try:
            self._write(line)
        finally:
            if got:
                self._lock.release()
        return record

    def _write(self, line: str) -> None:
        for out in (self._file, self.stream):
            if out is not None:
                try:
                    out.write(line + "\n")
                    out.flush()
                except (BrokenPipeError, ValueError):  # the parent went away; keep training
                    if out is self.stream:
                        self.stream = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Reads an ``events.jsonl`` file (skips a torn last line from a killed run)."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
