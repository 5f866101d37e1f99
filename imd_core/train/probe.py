"""The pre-training probe: every clip's file opened under a short deadline before epoch 1.

Each file is opened in a decode sandbox killed at ``data.probe_timeout``; files that time
out, crash, cannot be opened or have no video are left out, so no epoch waits on them.
Results are cached per content hash in ``RUN_DIR/probe_cache.json``, where the loader
also records files that hang later (:func:`mark_excluded`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
PROBE_PACKETS = 32  # demuxed packets at most: enough to reach every stream's first packets


@dataclasses.dataclass(frozen=True)
class Excluded:
    """A file the probe left out: its path and a one-line reason."""

    path: str
    reason: str


def probe_file(path: str, timeout: float) -> str | None:
    """Opens ``path`` and reads its first packets (runs in a decode sandbox).

    Decodes the first video packets too (an error there is not a verdict: the dataset
    copes with damaged frames), so the decoder is exercised where a crash kills only
    the sandbox.

    Returns:
        ``None`` when the file is usable as far as its start shows, else the reason.
    """
    import av

    from imd_core.errors import DecodeError
    from imd_core.media.probe import Watchdog, check_path, media_info, one_line, open_media, video_stream
    from imd_core.media.verdict import media_problem, strip_path

    try:
        p = check_path(path)
        dog = Watchdog(p, timeout)
        with open_media(p, dog) as container:
            vs = video_stream(container)
            problem = media_problem(media_info(p, container))  # no video, a still image: as everywhere
            if problem:
                return problem
            streams = [vs, *container.streams.audio[:1]]
            seen: set[int] = set()
            try:
                for n, packet in enumerate(container.demux(streams)):
                    dog.check()
                    seen.add(packet.stream.index)
                    if packet.stream.index == vs.index:
                        try:
                            packet.decode()
                        except av.error.FFmpegError:
                            pass
                    if len(seen) == len(streams) or n + 1 >= PROBE_PACKETS:
                        break
            except av.error.FFmpegError as exc:
                dog.check()
                return f"cannot read its first packets ({one_line(exc)})"
    except DecodeError as exc:
        return strip_path(str(exc), path)
    return None


def _load_cache(path: Path) -> dict[str, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    results = data.get("results")
    return dict(results) if isinstance(results, dict) else {}


def _save_cache(path: Path, results: dict[str, str | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")  # DDP ranks may write at once
    tmp.write_text(
        json.dumps({"version": CACHE_VERSION, "results": results}, indent=0) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)  # atomic: a killed run never leaves a torn cache


def probe_paths(
    paths: Sequence[str],
    *,
    timeout: float,
    cache_file: Path | None,
    workers: int = 2,
    hasher: Callable[[str], str] | None = None,
) -> dict[str, str | None]:
    """Probes each distinct path under a killing deadline; ``path -> None | reason``.

    Args:
        timeout: seconds per file (open + first packets; plus a 2 s grace before the kill);
            0: no probe, only the cached verdicts count (unknown files pass).
        cache_file: JSON of earlier results keyed by content hash (read and updated);
            ``None``: no cache.
        workers: sandboxes at once.
        hasher: ``path -> content hash`` (default: the dataset's ``content_hash``).
    """
    from imd_core.media.sandbox import run_bounded

    if hasher is None:
        from imd_core.data.dataset import content_hash as hasher
    cache = _load_cache(cache_file) if cache_file is not None else {}
    out: dict[str, str | None] = {}
    keys: dict[str, str | None] = {}
    todo: list[str] = []
    for p in dict.fromkeys(paths):
        try:
            keys[p] = hasher(p)
        except OSError:
            keys[p] = None  # missing or unreadable: the probe says why; nothing to cache it under
        if keys[p] is not None and keys[p] in cache:
            out[p] = cache[keys[p]]
        else:
            todo.append(p)
    if todo and timeout <= 0:
        out.update(dict.fromkeys(todo))
    elif todo:
        logger.info("probing %d files (open + first packets, %g s each at most)", len(todo), timeout)
        jobs = [((p, timeout), {}) for p in todo]
        for i, reason in run_bounded(
            probe_file, jobs, timeout=timeout, on_failure=lambda _i, why: why, workers=workers
        ):
            p = todo[i]
            out[p] = reason
            if keys[p] is not None:
                cache[keys[p]] = reason
        if cache_file is not None:
            _save_cache(cache_file, cache)
    return out


def exclude_unprobed(
    indexes: Sequence[Any], *, timeout: float, cache_file: Path | None, workers: int = 2
) -> tuple[list[Any], list[Excluded]]:
    """Each :class:`~imd_core.data.manifest.DatasetIndex` without the files the probe rejects.

    Returns:
        The filtered indexes (same order) and the excluded files (each once, sorted).
    """
    paths = [e.path for index in indexes for e in index.entries]
    verdict = probe_paths(paths, timeout=timeout, cache_file=cache_file, workers=workers)
    bad = {p: why for p, why in verdict.items() if why is not None}
    excluded = [Excluded(p, bad[p]) for p in sorted(bad)]
    for item in excluded:
        logger.warning("excluded from training: %s: %s", item.path, item.reason)
    kept = [
        dataclasses.replace(ix, entries=tuple(e for e in ix.entries if e.path not in bad)) for ix in indexes
    ]
    return kept, excluded


def mark_excluded(cache_file: Path, path: str, reason: str) -> bool:
    """Records ``path`` as unusable in the probe cache (by content hash), so every later
    :func:`exclude_unprobed` with this cache (``--resume``) leaves it out with ``reason``.

    Used for a file whose decode the loader's sandbox stopped. Returns False when the
    file cannot be hashed (then nothing is recorded).
    """
    from imd_core.data.dataset import content_hash

    try:
        key = content_hash(path)
    except OSError as exc:
        logger.warning("cannot record %s as excluded (%s)", path, exc)
        return False
    cache = _load_cache(cache_file)
    cache[key] = reason
    _save_cache(cache_file, cache)
    return True
