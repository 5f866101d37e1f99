"""Qt item models over :class:`BatchState`: the queue and the per-file results table."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from imd_app.state import BatchState
from imd_app.types import BatchRow

SORT_ROLE = Qt.ItemDataRole.UserRole

Index = QModelIndex | QPersistentModelIndex


class BatchQueueModel(QAbstractTableModel):
    HEADERS = ("File", "Status", "Progress", "Message")

    def __init__(self, state: BatchState) -> None:
        super().__init__()
        self._state = state
        state.item_added.connect(self._on_state_item_added)
        state.item_changed.connect(self._on_state_item_changed)
        state.cleared.connect(self._on_state_cleared)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._state.items)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        item = self._state.items[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (os.path.basename(item.path), item.status, f"{item.progress * 100:.0f}%", item.message)[
                col
            ]
        if role == SORT_ROLE and col == 2:
            return item.progress
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.message or item.path
        return None

    def _on_state_item_added(self, index: int) -> None:
        self.beginInsertRows(QModelIndex(), index, index)
        self.endInsertRows()

    def _on_state_item_changed(self, index: int) -> None:
        self.dataChanged.emit(self.index(index, 0), self.index(index, len(self.HEADERS) - 1))

    def _on_state_cleared(self) -> None:
        self.beginResetModel()
        self.endResetModel()


@dataclass(frozen=True)
class FileSummary:
    path: str
    best: BatchRow
    windows: int

    def values(self) -> tuple:
        r = self.best.result
        a = r.audio
        return (
            os.path.basename(self.path),
            r.label if r.confident else f"no confident action (best: {r.label})",
            r.score,
            a.present,
            a.dropped,
            a.relevance,
            self.best.duration,
            r.start,
        )


class BatchResultsModel(QAbstractTableModel):
    """One row per file: its best-scoring window (sort by any column through a proxy)."""

    HEADERS = (
        "File",
        "Top-1",
        "Score",
        "Audio present",
        "Dropped",
        "Relevance",
        "Duration (s)",
        "Best window (s)",
    )

    def __init__(self, state: BatchState) -> None:
        super().__init__()
        self._state = state
        self._files: list[FileSummary] = []
        self._index: dict[str, int] = {}
        state.rows_added.connect(self._on_state_rows_added)
        state.cleared.connect(self._on_state_cleared)

    def summary(self, row: int) -> FileSummary:
        return self._files[row]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._files)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        summary = self._files[index.row()]
        value = summary.values()[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            if isinstance(value, bool):
                return "yes" if value else "no"
            if value is None:
                return "—"
            if isinstance(value, float):
                return f"{value:.2f}" if index.column() in (6, 7) else f"{value:.3f}"
            return str(value)
        if role == SORT_ROLE:
            if value is None:
                return -1.0
            return float(value) if isinstance(value, bool | float | int) else str(value).lower()
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{summary.path}\n{summary.windows} window(s); double-click to play the best one"
        return None

    def _on_state_rows_added(self, first: int, count: int) -> None:
        touched: dict[str, list[BatchRow]] = {}
        for row in self._state.rows[first : first + count]:
            touched.setdefault(row.result.path, []).append(row)
        for path in touched:
            rows = [r for r in self._state.rows if r.result.path == path]
            best = max(rows, key=lambda r: r.result.score)
            summary = FileSummary(path=path, best=best, windows=len(rows))
            if path in self._index:
                i = self._index[path]
                self._files[i] = summary
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(self.HEADERS) - 1))
            else:
                i = len(self._files)
                self.beginInsertRows(QModelIndex(), i, i)
                self._files.append(summary)
                self._index[path] = i
                self.endInsertRows()

    def _on_state_cleared(self) -> None:
        self.beginResetModel()
        self._files.clear()
        self._index.clear()
        self.endResetModel()
