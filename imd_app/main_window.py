"""The main window: composes the Player, Batch and Training tabs. No business logic."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow, QTabWidget

from imd_core import __version__


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(f"IMD Studio {__version__}")
        self.resize(1280, 800)
        tabs = QTabWidget()
        for name in ("Player", "Batch", "Training"):
            tabs.addTab(QLabel(name), name)
        self.setCentralWidget(tabs)
