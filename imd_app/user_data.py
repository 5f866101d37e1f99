"""The one folder where the app keeps its own state: logs, job history, new training runs.

``$IMD_APP_DATA_DIR`` wins (tests, portable installs); otherwise
``QStandardPaths.AppDataLocation``. Every part of the app asks :func:`user_data_dir`, so
logs and job history never land in different folders.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "IMD_APP_DATA_DIR"


def user_data_dir() -> Path:
    """The per-user data folder (``$IMD_APP_DATA_DIR`` wins), created if missing."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        folder = Path(override)
    else:
        from PySide6.QtCore import QStandardPaths  # imported late: the job history is read without a GUI

        location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        folder = Path(location or Path.home() / ".imd-studio")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
