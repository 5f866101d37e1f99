"""The batch queue (files with status and progress) and the results it produced."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from PySide6.QtCore import QObject, Signal

from imd_app.types import BatchRow

ItemStatus = Literal["queued", "running", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class BatchItem:
    path: str
    status: ItemStatus = "queued"
    progress: float = 0.0  # 0..1
    message: str = ""


class BatchState(QObject):
    item_added = Signal(int)
    item_changed = Signal(int)
    rows_added = Signal(int, int)  # first index, count
    cleared = Signal()
    running_changed = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self.items: list[BatchItem] = []
        self.rows: list[BatchRow] = []
        self._running = False

    def add_item(self, path: str) -> int | None:
        """Queue ``path`` unless it is already queued and not finished; returns its index."""
        for item in self.items:
            if item.path == path and item.status in ("queued", "running"):
                return None
        self.items.append(BatchItem(path=path))
        index = len(self.items) - 1
        self.item_added.emit(index)
        return index

    def update_item(self, index: int, **changes) -> None:
        new = replace(self.items[index], **changes)
        if new != self.items[index]:
            self.items[index] = new
            self.item_changed.emit(index)

    def index_of(self, path: str, status: tuple[str, ...] = ("queued", "running")) -> int | None:
        for i, item in enumerate(self.items):
            if item.path == path and item.status in status:
                return i
        return None

    def add_rows(self, rows: list[BatchRow]) -> None:
        if rows:
            first = len(self.rows)
            self.rows.extend(rows)
            self.rows_added.emit(first, len(rows))

    @property
    def running(self) -> bool:
        return self._running

    def set_running(self, running: bool) -> None:
        if running != self._running:
            self._running = running
            self.running_changed.emit(running)

    def clear(self) -> None:
        self.items.clear()
        self.rows.clear()
        self.cleared.emit()
