"""Walking a folder tree for media files: each real folder once, whatever its links.

Links to folders are followed (datasets are often assembled from links), but each folder
is entered once, by ``(st_dev, st_ino)``, so a link loop ends the walk. What is passed over
(a broken link, an unreadable folder, a second path to a file) is returned with the
reason rather than dropped; hidden entries are skipped silently.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SkippedPath:
    """A path a folder scan passed over, and why (a one-line reason)."""

    path: str
    reason: str


def folder_key(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of a folder (links followed), ``None`` when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def walk_media(
    top: str | os.PathLike,
    is_media: Callable[[Path], bool],
    *,
    exclude: Iterable[tuple[int, int]] = (),
) -> tuple[list[Path], list[SkippedPath]]:
    """Lists the media files under ``top``, each real folder and each file once.

    Args:
        top: the folder to walk (the paths returned start with it).
        is_media: whether a file name counts (e.g. by its extension).
        exclude: ``(st_dev, st_ino)`` of folders never to enter (e.g. the other class
            folders of a dataset, so a link into one does not relabel its files).

    Returns:
        ``(files, skipped)``: the media files, sorted, as reached (through links, not
        resolved); what was passed over, with the reason, sorted.
    """
    top = Path(top)
    files: list[Path] = []
    skipped: list[SkippedPath] = []
    seen_dirs: dict[tuple[int, int], Path] = {}
    excluded = set(exclude)
    seen_files: dict[tuple[int, int], Path] = {}
    key = folder_key(top)
    if key is not None:
        seen_dirs[key] = top
    queue: deque[Path] = deque([top])
    while queue:
        folder = queue.popleft()
        try:
            with os.scandir(folder) as it:
                names = sorted(e.name for e in it)
        except OSError as exc:
            skipped.append(SkippedPath(str(folder), f"cannot read this folder ({exc.strerror or exc})"))
            continue
        for name in names:
            if name.startswith("."):
                continue
            path = folder / name
            try:
                st = os.stat(path)  # follows links
            except OSError as exc:
                if os.path.islink(path):
                    target = os.readlink(path)
                    why = "is a loop of links" if exc.errno == errno.ELOOP else "does not exist"
                    skipped.append(SkippedPath(str(path), f"broken link: its target {target} {why}"))
                elif is_media(path):
                    skipped.append(SkippedPath(str(path), f"cannot read it ({exc.strerror or exc})"))
                continue
            ident = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if is_media(path):
                    skipped.append(
                        SkippedPath(
                            str(path),
                            "a folder named like a media file, not a file (its contents are scanned)",
                        )
                    )
                if ident in seen_dirs:
                    skipped.append(
                        SkippedPath(
                            str(path), f"a second path to the folder {seen_dirs[ident]}, scanned once"
                        )
                    )
                elif ident in excluded:
                    skipped.append(
                        SkippedPath(str(path), "links to a folder scanned on its own (another class)")
                    )
                else:
                    seen_dirs[ident] = path
                    queue.append(path)
            elif is_media(path):
                if not stat.S_ISREG(st.st_mode):
                    skipped.append(SkippedPath(str(path), "not a regular file (a pipe, socket or device)"))
                elif ident in seen_files:
                    skipped.append(
                        SkippedPath(str(path), f"the same file as {seen_files[ident]}, listed once")
                    )
                else:
                    seen_files[ident] = path
                    files.append(path)
    files.sort()
    skipped.sort(key=lambda s: s.path)
    return files, skipped
