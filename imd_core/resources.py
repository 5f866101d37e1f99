"""Where the embedded resources (demo model, its tagger, demo clips) live.

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


def demo_tagger_dir() -> Path:
    """The demo model's frozen SynthAV AST tagger alone, as a Hugging Face folder."""
    return resources_dir() / "demo_tagger"


#: Taggers known by name: ``model.ast_source=demo_tagger`` anywhere an AST folder goes.
TAGGER_NAMES: tuple[str, ...] = ("demo_tagger",)


def resolve_tagger_source(source: str) -> str:
    """A tagger name (``demo_tagger``) -> its folder; anything else (hub id, folder) as is.

    An existing folder of that name in the current directory wins over the name.
    """
    if source in TAGGER_NAMES and not os.path.exists(source):
        return str(demo_tagger_dir())
    return source


def demo_clips_dir() -> Path:
    return resources_dir() / "demo_clips"


def demo_clips() -> list[Path]:
    folder = demo_clips_dir()
    return sorted(p for p in folder.glob("*.mp4")) if folder.is_dir() else []


#: Models known by name: ``--model kinetics400`` or ``--model demo`` anywhere a folder goes.
MODEL_NAMES: tuple[str, ...] = ("kinetics400", "demo")


def kinetics400_dir() -> Path:
    """The real-world model folder, written by ``imd pretrained build`` (scripts/setup.sh)."""
    return resources_dir() / "kinetics400"


def kinetics400_installed() -> bool:
    return (kinetics400_dir() / "model.safetensors").is_file()


def resolve_model_dir(name_or_folder: str | os.PathLike[str]) -> Path:
    """A model name (``kinetics400``, ``demo``) -> its folder; anything else is a folder path.

    An existing folder of that name in the current directory wins over the name.
    """
    path = Path(name_or_folder)
    if path.exists() or str(name_or_folder) not in MODEL_NAMES:
        return path
    if str(name_or_folder) == "demo":
        return demo_model_dir()
    if not kinetics400_installed():
        from imd_core.errors import CheckpointError

        raise CheckpointError(
            f"the kinetics400 model is not installed ({kinetics400_dir()} is missing); build it with "
            "`imd pretrained build` (bash scripts/setup.sh does it)"
        )
    return kinetics400_dir()


def default_app_model_dir() -> Path:
    """What the app opens first: the real-world model when installed, else the SynthAV demo."""
    return kinetics400_dir() if kinetics400_installed() else demo_model_dir()
