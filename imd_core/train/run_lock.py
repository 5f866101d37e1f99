"""One run per run folder: an advisory lock held for the life of the process.

Two ``imd train`` into one ``--out`` used to both start; one died on ``.best.old`` and
``events.jsonl`` got two ``run_started``. The lock file ``RUN/.lock`` holds the owner's pid;
the OS releases the lock when that process ends, however it ends (a SIGKILL included), so a
stale lock never blocks a resume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from imd_core.errors import TrainingError

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Takes the lock or raises ``TrainingError`` naming the pid that holds it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks (documented in README)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            # a POSIX record lock, not flock(): it belongs to this process only, so DataLoader
            # workers forked later do not inherit it and cannot keep it after a SIGKILL
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise TrainingError(
                f"{self.path.parent} is in use by another run (pid {owner}); wait for it to end, "
                "stop it, or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the lock
            self._file = None
