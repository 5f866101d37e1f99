"""Entry point of ``imd-app``: parses arguments, sets up logging, opens the main window."""

from __future__ import annotations

import argparse
import sys

from imd_core import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imd-app", description="IMD Studio desktop app.")
    parser.add_argument("--version", action="version", version=f"imd-app {__version__}")
    parser.add_argument("path", nargs="?", help="a video file to open in the player")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from PySide6.QtWidgets import QApplication

    from imd_app.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("IMD Studio")
    app.setOrganizationName("IMD Studio")
    window = MainWindow()
    window.show()
    del args
    return app.exec()
