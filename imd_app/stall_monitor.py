"""Measures how long the GUI thread's event loop goes without running a timer."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class StallMonitor(QObject):
    """A 5 ms timer on the GUI thread; a late tick means the thread was busy (a stall).

    ``worst_ms`` is the longest gap between ticks minus the interval (wall clock: on a
    busy machine it includes time the OS gave other processes). ``worst_busy_ms`` is the
    GUI thread's own CPU time inside the longest-working gap: what our code did on that
    thread, which preemption does not inflate.
    """

    def __init__(self, interval_ms: int = 5) -> None:
        super().__init__()
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._last: float | None = None
        self._last_cpu = 0.0
        self.gaps_ms: list[float] = []
        self.busy_ms: list[float] = []

    def start(self) -> None:
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self.gaps_ms.clear()
        self.busy_ms.clear()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _on_timer_timeout(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last is not None:
            self.gaps_ms.append((now - self._last) * 1000.0 - self.interval_ms)
            self.busy_ms.append((cpu - self._last_cpu) * 1000.0)
        self._last, self._last_cpu = now, cpu

    @property
    def worst_busy_ms(self) -> float:
        return max(self.busy_ms, default=0.0)

    @property
    def worst_ms(self) -> float:
        return max(self.gaps_ms, default=0.0)

    def percentile_ms(self, q: float) -> float:
        if not self.gaps_ms:
            return 0.0
        data = sorted(self.gaps_ms)
        return data[min(len(data) - 1, int(q / 100.0 * len(data)))]
