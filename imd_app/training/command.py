"""How the app launches the ``imd`` command line tool as a child process.

The app trains by running the very command a user runs (SLEAP-style). From a source
checkout or a pip install that is ``python -m imd_core train ...``; inside a PyInstaller
bundle there is no separate Python, so the frozen ``imd-app`` executable re-invokes
itself and routes a first argument ``train`` (or ``data``) to the ``imd`` CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def imd_command(args: Sequence[str]) -> tuple[str, list[str]]:
    """Program and arguments that run ``imd ARGS...`` in a child process.

    Args:
        args: the ``imd`` arguments, starting with the subcommand (``["train", ...]``).

    Returns:
        ``(program, arguments)`` ready for ``QProcess.start`` / ``subprocess.Popen``.
    """
    if getattr(sys, "frozen", False):
        # PyInstaller: sys.executable is imd-app itself, which routes CLI subcommands.
        return sys.executable, list(args)
    return sys.executable, ["-m", "imd_core", *args]


def imd_train_command(args: Sequence[str]) -> tuple[str, list[str]]:
    """Program and arguments that run ``imd train ARGS...`` (what packaging relies on).

    Args:
        args: the ``imd train`` arguments, without ``train`` itself.
    """
    return imd_command(["train", *args])
