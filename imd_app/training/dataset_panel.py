"""The dataset picker and the result of its check. Emits requests; shows summaries."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imd_app.training.dataset_check import CheckSummary


class DatasetPanel(QGroupBox):
    """Folder-or-manifest picker, class counts, unusable files and clips without audio."""

    check_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Dataset", parent)
        layout = QVBoxLayout(self)
        self.path = QLineEdit(self)
        self.path.setPlaceholderText(
            "a folder per class, or a CSV/JSONL manifest (path,label[,start,end,split])"
        )
        layout.addWidget(self.path)
        row = QHBoxLayout()
        self.folder_button = QPushButton("Folder…", self)
        self.manifest_button = QPushButton("Manifest…", self)
        self.check_button = QPushButton("Check", self)
        for button in (self.folder_button, self.manifest_button, self.check_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.status = QLabel("Pick a dataset; it is checked in the background.", self)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.details = QTreeWidget(self)
        self.details.setHeaderLabels(["", "count / reason"])
        self.details.setMinimumHeight(120)
        self.details.setWordWrap(True)
        layout.addWidget(self.details)
        self.skip_bad = QCheckBox(
            "Go on without the unusable files (a filtered manifest goes into the run folder)", self
        )
        self.skip_bad.setChecked(True)
        self.skip_bad.setVisible(False)
        layout.addWidget(self.skip_bad)
        self.summary: CheckSummary | None = None

        self.folder_button.clicked.connect(self._on_folder_button_clicked)
        self.manifest_button.clicked.connect(self._on_manifest_button_clicked)
        self.check_button.clicked.connect(self._on_check_button_clicked)
        self.path.editingFinished.connect(self._on_check_button_clicked)

    def set_path(self, path: str) -> None:
        """Sets the dataset and asks for its check."""
        self.path.setText(path)
        self._on_check_button_clicked()

    def _on_folder_button_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Dataset folder (one sub-folder per class)", self.path.text()
        )
        if folder:
            self.set_path(folder)

    def _on_manifest_button_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Dataset manifest", self.path.text(), "Manifests (*.csv *.jsonl)"
        )
        if path:
            self.set_path(path)

    def _on_check_button_clicked(self) -> None:
        path = self.path.text().strip()
        if path and (self.summary is None or self.summary.data != path):
            self.summary = None
            self.check_requested.emit(path)

    def show_checking(self, data: str) -> None:
        self.details.clear()
        self.skip_bad.setVisible(False)
        self.status.setText(f"Checking {Path(data).name} …")

    def show_failure(self, message: str) -> None:
        self.status.setText(message)

    def show_summary(self, summary: CheckSummary) -> None:
        self.summary = summary
        self.details.clear()
        self.status.setText(
            f"{summary.total} files: {summary.usable} usable, {len(summary.unusable)} unusable, "
            f"{len(summary.no_audio)} without audio, {len(summary.class_counts)} classes."
        )
        classes = QTreeWidgetItem(self.details, ["Classes", str(len(summary.class_counts))])
        for name, count in summary.class_counts.items():
            QTreeWidgetItem(classes, [name, str(count)])
        classes.setExpanded(True)
        if summary.unusable:
            bad = QTreeWidgetItem(self.details, ["Unusable files", str(len(summary.unusable))])
            for path, reason in summary.unusable:
                item = QTreeWidgetItem(bad, [Path(path).name, reason])
                item.setToolTip(0, path)
            bad.setExpanded(True)
        if summary.no_audio:
            quiet = QTreeWidgetItem(self.details, ["Clips without audio", str(len(summary.no_audio))])
            for path in summary.no_audio:
                QTreeWidgetItem(
                    quiet, [Path(path).name, "no audio stream (audio counts as dropped)"]
                ).setToolTip(0, path)
        self.skip_bad.setVisible(bool(summary.unusable))
        self.details.resizeColumnToContents(0)

    def excluded(self) -> tuple[str, ...]:
        """The unusable files to leave out (empty unless the user chose to)."""
        if self.summary is None or not self.skip_bad.isChecked():
            return ()
        return tuple(path for path, _ in self.summary.unusable)
