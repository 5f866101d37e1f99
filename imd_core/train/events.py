"""Writing a training run's events as JSON lines.

Every event is one JSON object on one line, flushed as soon as it is written, so a
parent process (the app's training tab runs ``imd train ... --events -`` as a
``QProcess``) can parse stdout line by line. The events and their fields are the
dataclasses of :mod:`imd_core.train.event_schema` (docs/TRAINING.md has the table).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import IO, Any

from imd_core.train.event_schema import EVENT_TYPES, Event, to_record

__all__ = ["EVENT_TYPES", "EventWriter", "read_events"]


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

    def __init__(
        self, path: Path | None, stream: IO[str] | None = None, *, run: str = "", enabled: bool = True
    ):
        self.path = path
        self.stream = stream
        self.run = run
        self.enabled = enabled
        self._file = None
        if enabled and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, event: Event) -> dict[str, Any]:
        """Writes one event line (flushed), stamped with ``time`` and ``run``; returns its mapping."""
        stamped = dataclasses.replace(event, time=round(time.time(), 3), run=self.run)
        record = _clean(to_record(stamped))
        if not self.enabled:
            return record
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        for out in (self._file, self.stream):
            if out is not None:
                try:
                    out.write(line + "\n")
                    out.flush()
                except (BrokenPipeError, ValueError):  # the parent went away; keep training
                    if out is self.stream:
                        self.stream = None
        return record

    def close(self) -> None:
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
