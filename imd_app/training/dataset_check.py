"""The dataset check, run in the background, and the filtered manifest it allows.

The check is the same command a user runs, ``imd data check DATA --json``, started as a
``QProcess`` so that a decoder crash on a bad file ends that process, not the app. The
newest request wins: picking another dataset kills the check still running.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, Signal

from imd_app.training.command import imd_command
from imd_core.errors import DataError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mkv",
    ".webm",
    ".avi",
    ".mov",
    ".mpg",
    ".mpeg",
    ".ogv",
    ".wmv",
    ".flv",
    ".3gp",
    ".ts",
)


@dataclasses.dataclass(frozen=True)
class CheckSummary:
    """What the tab shows of a dataset check.

    Attributes:
        data: the dataset checked.
        total: files checked.
        class_counts: usable clips per class.
        unusable: ``(path, reason)`` of files that cannot be used.
        no_audio: usable files without an audio stream (IMD treats them as audio dropped).
    """

    data: str
    total: int
    class_counts: dict[str, int]
    unusable: tuple[tuple[str, str], ...]
    no_audio: tuple[str, ...]

    @property
    def usable(self) -> int:
        return self.total - len(self.unusable)


def _files_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("files", "items", "results", "entries"):
        if isinstance(report.get(key), list):
            return [f for f in report[key] if isinstance(f, dict)]
    return []


def parse_check_report(report: dict[str, Any], data: str) -> CheckSummary:
    """Turns the JSON of ``imd data check --json`` into a :class:`CheckSummary`."""
    unusable: list[tuple[str, str]] = []
    no_audio: list[str] = []
    counts: Counter[str] = Counter()
    files = _files_of(report)
    for item in files:
        path = str(item.get("path") or item.get("file") or "")
        status = (
            str(item.get("status") or item.get("state") or item.get("result") or "ok")
            .lower()
            .replace("_", "-")
        )
        if status in ("error", "unusable", "bad", "missing"):
            unusable.append((path, str(item.get("reason") or item.get("error") or "unreadable")))
            continue
        if status == "no-audio" or item.get("has_audio") is False:
            no_audio.append(path)
        if item.get("label") is not None:
            counts[str(item["label"])] += 1
    if not files and isinstance(report.get("classes"), dict):
        # Only per-class totals: usable = ok + no-audio.
        for name, entry in report["classes"].items():
            if isinstance(entry, dict):
                counts[str(name)] = int(entry.get("ok", 0)) + int(entry.get("no-audio", 0))
    return CheckSummary(
        data=data,
        total=len(files),
        class_counts=dict(sorted(counts.items())),
        unusable=tuple(unusable),
        no_audio=tuple(no_audio),
    )


class DatasetChecker(QObject):
    """Runs ``imd data check`` in a child process; emits the summary or why it failed."""

    check_started = Signal(str)
    check_finished = Signal(object)  # CheckSummary
    check_failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._data = ""

    def is_running(self) -> bool:
        return self._process is not None

    def start(self, data: str) -> None:
        """Checks ``data`` (a folder or a manifest); a running check is abandoned."""
        self.cancel()
        self._data = data
        program, arguments = imd_command(["data", "check", data, "--json"])
        process = QProcess(self)
        process.setProgram(program)
        process.setArguments(arguments)
        process.finished.connect(self._on_process_finished)
        process.errorOccurred.connect(self._on_process_error)
        self._process = process
        process.start()
        self.check_started.emit(data)

    def cancel(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.finished.disconnect(self._on_process_finished)
            process.errorOccurred.disconnect(self._on_process_error)
            process.kill()
            process.waitForFinished(2000)
            process.deleteLater()

    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            process, self._process = self._process, None
            if process is not None:
                process.deleteLater()
            self.check_failed.emit("cannot start the dataset check; check the installation")

    def _on_process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        out = bytes(process.readAllStandardOutput().data()).decode("utf-8", "replace")
        err = bytes(process.readAllStandardError().data()).decode("utf-8", "replace").strip()
        process.deleteLater()
        try:
            report = json.loads(out)
        except json.JSONDecodeError:
            last = err.splitlines()[-1] if err else f"exit code {code}"
            self.check_failed.emit(f"dataset check failed: {last}")
            return
        # Exit code 3 only means some files are unusable: the report says which.
        self.check_finished.emit(parse_check_report(report, self._data))


def write_filtered_manifest(data: str | Path, excluded: tuple[str, ...] | list[str], out: str | Path) -> Path:
    """Writes a CSV manifest of ``data`` without the ``excluded`` files.

    A manifest keeps its rows and columns (paths made absolute); a folder-per-class tree
    becomes ``path,label`` rows of its video files.

    Raises:
        DataError: ``data`` cannot be read.
    """
    data, out = Path(data), Path(out)
    skip = {str(Path(p).resolve()) for p in excluded}
    rows: list[dict[str, str]] = []
    if data.is_dir():
        for class_dir in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(class_dir.rglob("*")):
                if (
                    path.is_file()
                    and path.suffix.lower() in VIDEO_SUFFIXES
                    and str(path.resolve()) not in skip
                ):
                    rows.append({"path": str(path.resolve()), "label": class_dir.name})
        columns = ["path", "label"]
    else:
        try:
            text = data.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(f"cannot read manifest {data}: {exc}; choose another file") from None
        if data.suffix.lower() in (".jsonl", ".json"):
            source = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            source = list(csv.DictReader(text.splitlines()))
        columns = list(dict.fromkeys(k for row in source for k in row))
        for row in source:
            path = Path(str(row.get("path", "")))
            path = path if path.is_absolute() else data.parent / path
            if str(path.resolve()) in skip:
                continue
            rows.append(
                {**{k: "" if v is None else str(v) for k, v in row.items()}, "path": str(path.resolve())}
            )
    if not rows:
        raise DataError(f"no usable files left in {data}; fix or add clips first")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    logger.info("wrote %s: %d files, %d left out", out, len(rows), len(skip))
    return out
