"""Importing a module of ``scripts/`` (not a package) in a test."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def import_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module; the siblings it imports stay importable by name."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(SCRIPTS))
