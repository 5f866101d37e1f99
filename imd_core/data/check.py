"""Checking a dataset: decode every file, report each as ok, no-audio or error.

A file is usable when its video decodes end to end; manifest windows must lie inside it.
Each file decodes in a sandbox process killed at the per-file time limit, so a file that
hangs inside FFmpeg is an error ("decode timed out after N s"), not a check that never ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from imd_core.data.manifest import ClipEntry, DatasetIndex, load_dataset_index
from imd_core.errors import ImdError
from imd_core.media.walk import SkippedPath

logger = logging.getLogger(__name__)

Status = Literal["ok", "no-audio", "error"]


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one clip of the dataset.

    Attributes:
        path: absolute file path.
        label, split: from the index.
        status: ``"ok"``, ``"no-audio"`` (usable, no sound) or ``"error"``.
        reason: one line saying what is wrong (``None`` when ok).
        duration: seconds of the clip (its window, or the decoded file).
        video_codec, audio_codec, width, height: what was found.
    """

    path: str
    label: str
    split: str
    status: Status
    reason: str | None = None
    duration: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int = 0
    height: int = 0

    @property
    def usable(self) -> bool:
        return self.status != "error"


@dataclass(frozen=True)
class CheckReport:
    """Every file's verdict plus per-class counts and durations.

    ``skipped`` lists what the folder scan passed over (a broken link, a folder named
    ``x.mp4``, ...) with the reason: warnings, which do not make the dataset unusable.
    """

    root: str
    labels: tuple[str, ...]
    files: tuple[FileCheck, ...]
    skipped: tuple[SkippedPath, ...] = ()

    @property
    def usable(self) -> bool:
        """True when every file is usable (the CLI then exits 0)."""
        return all(f.usable for f in self.files)

    @property
    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "no-audio": 0, "error": 0}
        for f in self.files:
            out[f.status] += 1
        return out

    def classes(self) -> dict[str, dict[str, Any]]:
        """Per class: clips by status and seconds of usable footage."""
        out: dict[str, dict[str, Any]] = {
            label: {"ok": 0, "no-audio": 0, "error": 0, "seconds": 0.0} for label in self.labels
        }
        for f in self.files:
            row = out.setdefault(f.label, {"ok": 0, "no-audio": 0, "error": 0, "seconds": 0.0})
            row[f.status] += 1
            if f.usable and f.duration:
                row["seconds"] += f.duration
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "usable": self.usable,
            "counts": self.counts,
            "classes": self.classes(),
            "files": [asdict(f) for f in self.files],
            "skipped": [asdict(s) for s in self.skipped],
        }

    def format_text(self) -> str:
        """A human-readable report: one line per file, then the class table."""
        lines = []
        for f in self.files:
            if f.status == "error":
                lines.append(f"error     {f.path}: {f.reason}")
            else:
                extra = f" ({f.reason})" if f.reason else ""
                codecs = f"{f.video_codec}/{f.audio_codec or '-'}"
                lines.append(f"{f.status:<9} {f.path}  {f.duration or 0:.2f} s {codecs}{extra}")
        lines.extend(f"skipped   {s.path}: {s.reason}" for s in self.skipped)
        lines.append("")
        width = max([len(c) for c in self.labels] + [5])
        lines.append(f"{'class':<{width}}  {'ok':>5} {'no-audio':>8} {'error':>5} {'usable s':>9}")
        for label, row in self.classes().items():
            lines.append(
                f"{label:<{width}}  {row['ok']:>5} {row['no-audio']:>8} {row['error']:>5} {row['seconds']:>9.1f}"
            )
        c = self.counts
        total = sum(c.values())
        lines.append(
            f"{total} files: {c['ok']} ok, {c['no-audio']} without audio, {c['error']} unusable"
            + (f"; {len(self.skipped)} paths skipped (listed above)" if self.skipped else "")
        )
        return "\n".join(lines)


def check_entry(entry: ClipEntry, timeout: float = 120.0) -> FileCheck:
    """Decodes one clip's file and judges it, in this process (never raises for a bad file)."""
    from imd_core.media.probe import probe
    from imd_core.media.scan import scan_media
    from imd_core.media.verdict import damaged_warning, media_problem, strip_path

    base = {"path": entry.path, "label": entry.label, "split": entry.split}
    try:
        scan = scan_media(entry.path, timeout=timeout)
        # the verdict predict, batch, training and the player share (still images, truncation)
        problem = media_problem(probe(entry.path, timeout=timeout), video_frames=scan.video_frames,
                                video_end=scan.video_end)  # fmt: skip
    except ImdError as exc:
        return FileCheck(status="error", reason=strip_path(str(exc), entry.path), **base)
    found = {
        "video_codec": scan.video_codec,
        "audio_codec": scan.audio_codec,
        "width": scan.width,
        "height": scan.height,
    }
    if scan.video_frames == 0:  # nothing decodable at all
        problem = scan.problem or problem
    # Otherwise the shared verdict alone decides: damaged packets and a read that stopped
    # early are warnings (below) or truncation, exactly as ``imd predict`` judges them.
    if problem:
        return FileCheck(status="error", reason=problem, duration=scan.video_end, **found, **base)
    end = scan.video_end or 0.0
    start = entry.start or 0.0
    if start >= end:
        return FileCheck(
            status="error",
            reason=f"window starts at {start:.2f} s, after the video ends ({end:.2f} s)",
            **found,
            **base,
        )
    stop = min(entry.end, end) if entry.end is not None else end
    duration = stop - start
    reason = None
    if entry.end is not None and entry.end > end + 0.5:
        reason = f"window end {entry.end:.2f} s is past the video end ({end:.2f} s); clipped"
    if not scan.has_audio:
        why = "no audio stream" if scan.audio_codec is None else "audio stream has no decodable samples"
        return FileCheck(status="no-audio", reason=why, duration=duration, **found, **base)
    if scan.damaged_packets:  # a warning, as imd predict gives it
        reason = damaged_warning(scan.damaged_packets) + (f"; {reason}" if reason else "")
    return FileCheck(status="ok", reason=reason, duration=duration, **found, **base)


def _failed(entry: ClipEntry, reason: str) -> FileCheck:
    """The verdict on a file whose decode was stopped (deadline) or crashed its process."""
    return FileCheck(path=entry.path, label=entry.label, split=entry.split, status="error", reason=reason)


def check_index(
    index: DatasetIndex,
    *,
    timeout: float = 120.0,
    workers: int = 1,
    progress: Callable[[int, int, FileCheck], None] | None = None,
) -> CheckReport:
    """Checks every clip of an index in ``workers`` killable worker processes.

    Args:
        index: the dataset.
        timeout: per-file time limit, seconds (plus the duration a file claims, so long
            recordings are not cut short); a decode still running then is killed and
            the file reported as an error.
        workers: processes decoding in parallel (at least one; the check itself never
            decodes in the calling process).
        progress: called with ``(done, total, result)`` after each file (in the order
            files finish).
    """
    from imd_core.media.sandbox import run_bounded

    entries: Sequence[ClipEntry] = index.entries
    results: list[FileCheck | None] = [None] * len(entries)
    jobs = [((e, timeout), {}) for e in entries]
    done = 0
    for i, r in run_bounded(
        check_entry,
        jobs,
        timeout=timeout,
        on_failure=lambda i, reason: _failed(entries[i], reason),
        workers=min(max(1, workers), os.cpu_count() or 1),
    ):
        results[i] = r
        done += 1
        if progress:
            progress(done, len(entries), r)
    files = tuple(r for r in results if r is not None)
    for r in files:
        if r.status == "error":
            logger.info("%s: %s", r.path, r.reason)
    return CheckReport(index.root, index.labels, files, index.skipped)


def check_dataset(
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    timeout: float = 120.0,
    workers: int = 1,
    progress: Callable[[int, int, FileCheck], None] | None = None,
) -> CheckReport:
    """Loads a dataset (class folders or manifest) and checks every file.

    Raises:
        DataError: the dataset itself cannot be read (see ``load_dataset_index``).
    """
    index = load_dataset_index(path, labels=labels)
    return check_index(index, timeout=timeout, workers=workers, progress=progress)
