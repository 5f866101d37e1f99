"""The persisted list of training jobs (status, run folder, pid, best metrics).

Stored as one JSON file in the user data folder (``QStandardPaths.AppDataLocation``), or
under ``$IMD_APP_DATA_DIR`` when set (tests). Written atomically; a damaged file is kept
aside and an empty history starts, so a bad file never stops the app.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from imd_app.user_data import user_data_dir

logger = logging.getLogger(__name__)

HISTORY_FILE = "training_jobs.json"

Status = Literal["queued", "running", "stopping", "stopped", "finished", "failed", "cancelled", "interrupted"]
ACTIVE = ("running", "stopping")
RESUMABLE = ("stopped", "failed", "interrupted")


@dataclasses.dataclass
class JobRecord:
    """One job in the history. ``spec`` is a :class:`JobSpec` as a dict."""

    id: str
    spec: dict[str, Any]
    run_dir: str
    status: Status = "queued"
    pid: int | None = None
    created: float = dataclasses.field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    best: dict[str, float] = dataclasses.field(default_factory=dict)
    failure: str = ""
    attempts: int = 0
    resume_next: bool = False

    @staticmethod
    def new(spec: dict[str, Any], run_dir: str) -> JobRecord:
        return JobRecord(id=uuid.uuid4().hex[:12], spec=spec, run_dir=run_dir)

    @property
    def name(self) -> str:
        return Path(self.run_dir).name or self.id

    @staticmethod
    def from_dict(data: dict[str, Any]) -> JobRecord:
        names = {f.name for f in dataclasses.fields(JobRecord)}
        return JobRecord(**{k: v for k, v in data.items() if k in names})


class JobHistory:
    """Loads and saves the job list. Not thread-safe: used from the GUI thread only."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else user_data_dir() / HISTORY_FILE
        self.records: list[JobRecord] = self._load()

    def _load(self) -> list[JobRecord]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [JobRecord.from_dict(item) for item in data.get("jobs", [])]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            aside = self.path.with_suffix(f".broken-{int(time.time())}.json")
            logger.warning(
                "job history %s is unreadable (%s); kept as %s, starting empty", self.path, exc, aside
            )
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return []

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        payload = {"version": 1, "jobs": [dataclasses.asdict(r) for r in self.records]}
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def get(self, job_id: str) -> JobRecord | None:
        return next((r for r in self.records if r.id == job_id), None)

    def add(self, record: JobRecord) -> None:
        self.records.append(record)
        self.save()

    def remove(self, job_id: str) -> None:
        self.records = [r for r in self.records if r.id != job_id]
        self.save()
