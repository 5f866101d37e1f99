"""Dataset indexes: a folder-per-class tree, or a CSV / JSON-lines manifest.

Layouts: ``DATA/<class>/<file>``, ``DATA/<split>/<class>/<file>`` (``train``, ``val``,
``test``), ``manifest.csv`` (``path,label[,start,end,split]``) or ``manifest.jsonl``.
Labels match case-insensitively; entries without a split get a seeded per-class split,
so the same data and seed always give the same split.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from imd_core.errors import DataError
from imd_core.media.walk import SkippedPath, folder_key, walk_media

logger = logging.getLogger(__name__)

MEDIA_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .gif".split()
)
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "dev": "val", "test": "test", "testing": "test"}  # fmt: skip
DEFAULT_RATIOS = (0.8, 0.1, 0.1)

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class ClipEntry:
    """One labelled clip: a file and, optionally, a time window of it.

    Attributes:
        path: absolute path of the media file.
        label: class name (canonical spelling).
        label_index: index of ``label`` in :attr:`DatasetIndex.labels`.
        start, end: window in seconds (``None``: from the start / to the end).
        split: ``"train"``, ``"val"`` or ``"test"``.
    """

    path: str
    label: str
    label_index: int
    start: float | None = None
    end: float | None = None
    split: str = "train"


@dataclass(frozen=True)
class DatasetIndex:
    """Every clip of a dataset with its label and split.

    Attributes:
        root: the dataset folder or manifest file it was read from.
        labels: class names; a clip's ``label_index`` points here.
        entries: the clips, in a stable (sorted) order.
        layout: ``"folders"``, ``"csv"`` or ``"jsonl"``.
        skipped: paths a folder scan passed over (broken links, a folder named
            ``x.mp4``, ...), each with its reason; also logged as warnings.
    """

    root: str
    labels: tuple[str, ...]
    entries: tuple[ClipEntry, ...]
    layout: str
    skipped: tuple[SkippedPath, ...] = ()

    def __len__(self) -> int:
        return len(self.entries)

    def split(self, name: str) -> DatasetIndex:
        """The entries of one split (``"train"``, ``"val"`` or ``"test"``), labels unchanged."""
        split = _canonical_split(name, "split")
        return replace(self, entries=tuple(e for e in self.entries if e.split == split))

    def class_counts(self) -> dict[str, int]:
        """Clips per class, every class listed (zero included), in label order."""
        counts = Counter(e.label for e in self.entries)
        return {label: counts.get(label, 0) for label in self.labels}

    def split_counts(self) -> dict[str, int]:
        counts = Counter(e.split for e in self.entries)
        return {s: counts.get(s, 0) for s in SPLITS}


def _canonical_split(value: str, where: str) -> str:
    key = str(value).strip().lower()
    if key not in _SPLIT_ALIASES:
        raise DataError(f"{where}: unknown split {value!r}; use one of {list(SPLITS)}")
    return _SPLIT_ALIASES[key]


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS and not path.name.startswith(".")


def _number(value, where: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {value!r} is not a number of seconds") from None
    if not np.isfinite(x) or x < 0:
        raise DataError(f"{where}: time {value!r} must be a finite number >= 0")
    return x


def _rows_from_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        first = next(csv.reader([sample.splitlines()[0]])) if sample.strip() else []
        header = [c.strip().lower() for c in first]
        if "path" in header and "label" in header:
            reader = csv.DictReader(f)
            reader.fieldnames = [c.strip().lower() for c in reader.fieldnames or []]
            return [{k: v for k, v in row.items() if k is not None} for row in reader]
        # No header: positional path,label[,start,end,split]
        names = ["path", "label", "start", "end", "split"]
        return [
            dict(zip(names, row, strict=False))
            for row in csv.reader(f)
            if row and any(c.strip() for c in row)
        ]


def _rows_from_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{n}: not valid JSON ({exc.msg}); one object per line is expected"
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: expected a JSON object with 'path' and 'label'")
            rows.append({str(k).lower(): v for k, v in row.items()})
    return rows


def _rows_from_folders(root: Path) -> tuple[list[dict], list[SkippedPath]]:
    skipped: list[SkippedPath] = []
    seen = {folder_key(root): root}

    def folders(parent: Path) -> list[Path]:
        """The split or class folders in ``parent``, each real folder once."""
        out = []
        for p in sorted(parent.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                key = folder_key(p)
                if key in seen:  # e.g. ``self -> .``: a loop, not a class
                    skipped.append(
                        SkippedPath(str(p), f"a second path to the folder {seen[key]}, scanned once")
                    )
                    continue
                seen[key] = p
                out.append(p)
            elif p.is_symlink() and not p.exists():
                skipped.append(
                    SkippedPath(str(p), f"broken link: its target {os.readlink(p)} does not exist")
                )
        return out

    subdirs = folders(root)
    split_dirs = [p for p in subdirs if p.name.lower() in _SPLIT_ALIASES]
    rows: list[dict] = []
    if split_dirs and len(split_dirs) == len(subdirs):
        classes = [(c, _SPLIT_ALIASES[d.name.lower()]) for d in split_dirs for c in folders(d)]
    else:
        classes = [(c, None) for c in subdirs]
    keys = {folder_key(d) for d, _ in classes} - {None}
    for class_dir, split in classes:
        # each class folder walks its own tree once; a link into another class's folder
        # is not followed (its files would get a second label)
        files, passed = walk_media(class_dir, _is_media, exclude=keys - {folder_key(class_dir)})
        skipped.extend(passed)
        rows.extend({"path": str(f), "label": class_dir.name, "split": split} for f in files)
    return rows, skipped


def _warn_skipped(skipped: Sequence[SkippedPath], limit: int = 20) -> None:
    for s in skipped[:limit]:
        logger.warning("skipped %s: %s", s.path, s.reason)
    if len(skipped) > limit:
        logger.warning("skipped %d more paths (imd data check lists them all)", len(skipped) - limit)


def _find_manifest(folder: Path) -> Path | None:
    found = [folder / n for n in ("manifest.csv", "manifest.jsonl") if (folder / n).is_file()]
    if len(found) > 1:
        raise DataError(f"{folder}: holds both manifest.csv and manifest.jsonl; pass the one to use")
    return found[0] if found else None


def _assign_splits(entries: list[ClipEntry], ratios: Sequence[float], seed: int) -> list[ClipEntry]:
    """Gives every entry without a split one, per class, seeded and stable."""
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or r.sum() <= 0:
        raise DataError(f"split ratios must be three non-negative numbers (train, val, test), got {ratios}")
    r = r / r.sum()
    by_class: dict[int, list[int]] = {}
    for i, e in enumerate(entries):
        if e.split == "":
            by_class.setdefault(e.label_index, []).append(i)
    out = list(entries)
    for label_index, idx in sorted(by_class.items()):
        rng = np.random.default_rng([seed, label_index])
        order = rng.permutation(len(idx))
        n = len(idx)
        n_val = int(round(n * r[1]))
        n_test = int(round(n * r[2]))
        if n >= 3:  # a class with a few clips still gets at least one training clip
            n_val, n_test = min(n_val, n - 1), min(n_test, max(0, n - 1 - n_val))
        for rank, j in enumerate(order):
            split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            out[idx[j]] = replace(entries[idx[j]], split=split)
    return out


def load_dataset_index(
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    split_ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
) -> DatasetIndex:
    """Reads a dataset folder or manifest.

    Args:
        path: a folder (class folders, split folders, or one ``manifest.csv/.jsonl``),
            or a manifest file.
        labels: the class names to use, in order (e.g. a model's labels); clips with
            other labels are an error. Default: the sorted labels found.
        split_ratios: train/val/test ratios for clips without a split.
        seed: seed of that split.

    Raises:
        DataError: missing path, unreadable manifest, missing columns, bad times,
            unknown labels or splits, or no clip at all.
    """
    # absolute from the start: folder scans list paths under ``root``, and a relative root
    # joined again below used to double (``plain/plain/cls_a/a.mp4``)
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise DataError(f"{root}: dataset not found; pass a class-folder tree or a manifest.csv/.jsonl")
    base = root
    if root.is_dir():
        manifest = _find_manifest(root)
        if manifest is not None:
            root = manifest
    skipped: list[SkippedPath] = []
    if root.is_dir():
        (rows, skipped), layout, base = _rows_from_folders(root), "folders", root
        _warn_skipped(skipped)
    else:
        suffix = root.suffix.lower()
        base = root.parent
        try:
            if suffix == ".csv":
                rows, layout = _rows_from_csv(root), "csv"
            elif suffix in (".jsonl", ".ndjson"):
                rows, layout = _rows_from_jsonl(root), "jsonl"
            else:
                raise DataError(f"{root}: not a manifest; use a .csv or .jsonl file, or a class-folder tree")
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{root}: cannot read the manifest ({exc})") from None

    canonical: dict[str, str] = {}
    if labels is not None:
        for name in labels:
            canonical.setdefault(str(name).strip().casefold(), str(name).strip())
    found: dict[str, str] = {}
    raw: list[tuple[dict, str]] = []
    for n, row in enumerate(rows, 1):
        where = f"{root} row {n}"
        p, lab = row.get("path"), row.get("label")
        if p is None or str(p).strip() == "" or lab is None or str(lab).strip() == "":
            raise DataError(f"{where}: needs both 'path' and 'label' (columns path,label[,start,end,split])")
        key = str(lab).strip().casefold()
        if labels is not None and key not in canonical:
            raise DataError(f"{where}: label {lab!r} is not one of the {len(canonical)} given labels")
        found.setdefault(key, str(lab).strip())
        raw.append((row, key))
    if not raw:
        raise DataError(f"{root}: no clips found (expected media files in class folders, or manifest rows)")

    names = list(labels) if labels is not None else sorted(found.values(), key=str.casefold)
    names = [str(x).strip() for x in names]
    index_of = {name.casefold(): i for i, name in enumerate(names)}
    entries = []
    for n, (row, key) in enumerate(raw, 1):
        where = f"{root} row {n}"
        p = Path(str(row["path"]).strip()).expanduser()
        p = p if p.is_absolute() else base / p
        start, end = _number(row.get("start"), where), _number(row.get("end"), where)
        if start is not None and end is not None and end <= start:
            raise DataError(f"{where}: end {end} must be after start {start}")
        split = row.get("split")
        split = _canonical_split(split, where) if split not in (None, "") else ""
        i = index_of[key]
        entries.append(ClipEntry(os.path.abspath(p), names[i], i, start, end, split))
    entries = _assign_splits(entries, split_ratios, seed)
    entries.sort(key=lambda e: (e.path, e.start or 0.0, e.end or 0.0))
    return DatasetIndex(str(root), tuple(names), tuple(entries), layout, tuple(skipped))
