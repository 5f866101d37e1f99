"""Process-wide set-up of the app: log file, exception hooks, palette.

Only ``imd_app.main`` calls these; tests call them on purpose.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import traceback
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from imd_app.user_data import user_data_dir

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def setup_logging(verbose: int = 0, log_dir: Path | None = None) -> Path:
    """Log to a rotating file in the user data folder (and warnings to stderr).

    Returns:
        The log file's path.
    """
    folder = (log_dir or user_data_dir()) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "imd-app.log"
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_imd_app", False):
            root.removeHandler(handler)
            handler.close()
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    file_handler.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    stream_handler = logging.StreamHandler(sys.stderr)
    stream_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    stream_handler.setLevel(
        logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    )
    for handler in (file_handler, stream_handler):
        handler._imd_app = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    return path


class ExceptionReporter(QObject):
    """Receives uncaught exceptions from any thread and shows them on the GUI thread.

    ``sys.excepthook`` and ``threading.excepthook`` log the traceback and emit
    ``exception_raised``; a queued connection brings it to the GUI thread, which shows
    a dialog (unless ``show_dialogs`` is off, as in the self-test).
    """

    exception_raised = Signal(str, str)  # one-line summary, full traceback

    def __init__(self, parent_widget: QWidget | None = None, show_dialogs: bool = True) -> None:
        super().__init__()
        self._parent_widget = parent_widget
        self.show_dialogs = show_dialogs
        self.count = 0
        self.exception_raised.connect(self._on_self_exception_raised, Qt.ConnectionType.QueuedConnection)
        self._previous: tuple | None = None
        self._boxes: list[QMessageBox] = []

    def set_parent_widget(self, widget: QWidget | None) -> None:
        self._parent_widget = widget

    def install(self) -> None:
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._sys_hook
        threading.excepthook = self._thread_hook

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = None

    def report(self, exc_type, exc, tb, where: str) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        summary = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__
        log.error("uncaught exception in %s:\n%s", where, text)
        self.count += 1
        self.exception_raised.emit(summary, text)

    def _sys_hook(self, exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            QApplication.quit()
            return
        self.report(exc_type, exc, tb, "the GUI thread")

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "a thread"
        self.report(args.exc_type, args.exc_value, args.exc_traceback, name)

    def _on_self_exception_raised(self, summary: str, text: str) -> None:
        if not self.show_dialogs:
            return
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "IMD Studio: unexpected error",
            f"{summary}\n\nThe app keeps running; details are in the log file.",
            QMessageBox.StandardButton.Ok,
            self._parent_widget,
        )
        box.setDetailedText(text)
        box.setModal(False)
        # Without a parent nothing else holds the dialog: keep it until it is closed.
        self._boxes.append(box)
        box.finished.connect(lambda _r, b=box: self._boxes.remove(b) if b in self._boxes else None)
        box.show()


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 30, 33), QColor(45, 45, 48), QColor(225, 225, 225)
    for role, color in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.ToolTipBase, window),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.BrightText, QColor(255, 80, 80)),
        (QPalette.ColorRole.Highlight, QColor(42, 130, 218)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.PlaceholderText, QColor(140, 140, 140)),
        (QPalette.ColorRole.Link, QColor(90, 160, 255)),
    ):
        p.setColor(role, color)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 120, 120))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 120, 120))
    return p


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    window = QGuiApplication.palette().color(QPalette.ColorRole.Window)
    return window.lightness() < 128


def apply_palette(app: QApplication, dark: bool | None = None) -> bool:
    """Fusion style with a light or dark palette following the system (or ``dark``).

    Returns:
        Whether the dark palette is in use.
    """
    app.setStyle("Fusion")
    dark = system_is_dark() if dark is None else dark
    app.setPalette(_dark_palette() if dark else app.style().standardPalette())
    return dark


def follow_system_palette(app: QApplication) -> None:
    """Re-apply the palette whenever the system switches between light and dark."""
    hints = QGuiApplication.styleHints()
    if hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda _scheme: apply_palette(app))
