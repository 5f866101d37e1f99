"""Where the embedded resources (demo model, demo clips) live.

``resources/`` sits beside the packages in a source checkout and inside the bundle of
a PyInstaller build (``sys._MEIPASS``). ``IMD_RESOURCES`` overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    env = os.environ.get("IMD_RESOURCES")
    if env:
        return Path(env)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def demo_model_dir() -> Path:
    """The embedded demo model folder (a loadable checkpoint folder)."""
    return resources_dir() / "demo_model"


def demo_clips_dir() -> Path:
    return resources_dir() / "demo_clips"


def demo_clips() -> list[Path]:
    folder = demo_clips_dir()
    return sorted(p for p in folder.glob("*.mp4")) if folder.is_dir() else []
