"""The Batch tab: drop files or folders, watch the queue, sort/filter results, export."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from imd_app.state import BatchState
from imd_app.table_models import SORT_ROLE, BatchQueueModel, BatchResultsModel
from imd_core.inference.inputs import MEDIA_EXTENSIONS

# One filter for every file dialog (player and batch): the extensions `imd predict` scans for.
VIDEO_FILTER = "Videos (" + " ".join(f"*{ext}" for ext in sorted(MEDIA_EXTENSIONS)) + ");;All files (*)"


class ProgressDelegate(QStyledItemDelegate):
    def paint(self, painter, option, index) -> None:
        value = index.data(SORT_ROLE)
        if value is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 2, -2, -2)
        bar.minimum, bar.maximum = 0, 100
        bar.progress = int(float(value) * 100)
        bar.text = f"{bar.progress}%"
        bar.textVisible = True
        bar.state = option.state
        QApplication.style().drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class BatchTab(QWidget):
    paths_requested = Signal(list)  # files and folders to queue
    cancel_requested = Signal(list)  # queue row indices
    cancel_all_requested = Signal()
    clear_requested = Signal()
    export_requested = Signal(str)
    open_requested = Signal(str, float)  # path, start second
    window_changed = Signal(float)  # 0: the model's default
    decode_timeout_changed = Signal(float)  # seconds

    def __init__(self, state: BatchState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._state = state
        self.setAcceptDrops(True)
        self.queue_model = BatchQueueModel(state)
        self.results_model = BatchResultsModel(state)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.results_model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)

        add_files = QPushButton("Add files…")
        add_files.clicked.connect(self.add_files_dialog)
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self.add_folder_dialog)
        self.cancel_button = QPushButton("Cancel selected")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.cancel_all_button = QPushButton("Cancel all")
        self.cancel_all_button.clicked.connect(self.cancel_all_requested)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear_requested)
        self.window_box = QDoubleSpinBox()
        self.window_box.setRange(0.0, 600.0)
        self.window_box.setDecimals(2)
        self.window_box.setSpecialValueText("model default")
        self.window_box.setSuffix(" s")
        self.window_box.setToolTip("Window length; 0 = the model's audio length")
        self.window_box.valueChanged.connect(self.window_changed)
        self.timeout_box = QSpinBox()
        self.timeout_box.setRange(1, 3600)
        self.timeout_box.setValue(60)
        self.timeout_box.setSuffix(" s")
        self.timeout_box.setToolTip(
            "Decode timeout: a file whose decoding keeps the app waiting longer than this (plus the "
            "duration it claims) is stopped and reported as an error; also bounds opening a file in the player"
        )
        self.timeout_box.valueChanged.connect(lambda v: self.decode_timeout_changed.emit(float(v)))
        export_csv = QPushButton("Export CSV…")
        export_csv.clicked.connect(lambda: self.export_dialog("csv"))
        export_json = QPushButton("Export JSON…")
        export_json.clicked.connect(lambda: self.export_dialog("json"))
        buttons = QHBoxLayout()
        for w in (add_files, add_folder, self.cancel_button, self.cancel_all_button, self.clear_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Window"))
        buttons.addWidget(self.window_box)
        buttons.addWidget(QLabel("Decode timeout"))
        buttons.addWidget(self.timeout_box)
        buttons.addWidget(export_csv)
        buttons.addWidget(export_json)

        self.queue_view = QTableView()
        self.queue_view.setModel(self.queue_model)
        self.queue_view.setItemDelegateForColumn(2, ProgressDelegate(self.queue_view))
        self.queue_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.queue_view.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.queue_view.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.queue_view.verticalHeader().hide()

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter results (file, label, yes/no…)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.proxy.setFilterFixedString)
        self.results_view = QTableView()
        self.results_view.setModel(self.proxy)
        self.results_view.setSortingEnabled(True)
        self.results_view.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.results_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.results_view.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.results_view.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.results_view.verticalHeader().hide()
        self.results_view.doubleClicked.connect(self._on_results_double_clicked)

        queue_box = QWidget()
        ql = QVBoxLayout(queue_box)
        ql.setContentsMargins(0, 0, 0, 0)
        ql.addWidget(QLabel("Queue — drop video files or folders anywhere in this window"))
        ql.addWidget(self.queue_view)
        results_box = QWidget()
        rl = QVBoxLayout(results_box)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(QLabel("Results — best window per file; double-click to play it"))
        rl.addWidget(self.filter_edit)
        rl.addWidget(self.results_view)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(queue_box)
        splitter.addWidget(results_box)
        splitter.setSizes([250, 450])
        self.status_label = QLabel("")
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status_label)
        state.running_changed.connect(self._on_state_running_changed)
        self._on_state_running_changed(state.running)

    def show_message(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_state_running_changed(self, running: bool) -> None:
        self.clear_button.setEnabled(not running)

    def add_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add videos", "", VIDEO_FILTER)
        if files:
            self.paths_requested.emit(files)

    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of videos")
        if folder:
            self.paths_requested.emit([folder])

    def _on_cancel_clicked(self) -> None:
        rows = sorted({i.row() for i in self.queue_view.selectionModel().selectedRows()})
        if rows:
            self.cancel_requested.emit(rows)

    def export_dialog(self, kind: str) -> None:
        pattern = "CSV (*.csv)" if kind == "csv" else "JSON lines (*.jsonl *.json)"
        path, _ = QFileDialog.getSaveFileName(
            self,
            f"Export results as {kind.upper()}",
            f"results.{'csv' if kind == 'csv' else 'jsonl'}",
            pattern,
        )
        if path:
            self.export_requested.emit(path)

    def _on_results_double_clicked(self, index: QModelIndex) -> None:
        source = self.proxy.mapToSource(index)
        summary = self.results_model.summary(source.row())
        self.open_requested.emit(summary.path, float(summary.best.result.start))

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.paths_requested.emit(paths)
            event.acceptProposedAction()
