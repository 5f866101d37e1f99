"""A bounded, thread-safe queue of decoded frames with a generation per seek."""

from __future__ import annotations

import threading
from collections import deque

from imd_app.types import VideoFrame


class FrameQueue:
    """The decode thread pushes frames in time order; the GUI takes the one that is due.

    ``generation`` changes on every open or seek: a frame decoded for an older
    generation is refused, so the newest seek wins without waiting for the decoder.
    """

    def __init__(self, capacity: int = 48) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._frames: deque[VideoFrame] = deque()
        self._generation = 0
        self.end_of_stream = False

    def new_generation(self) -> int:
        with self._lock:
            self._generation += 1
            self._frames.clear()
            self.end_of_stream = False
            return self._generation

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def full(self) -> bool:
        with self._lock:
            return len(self._frames) >= self.capacity

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def push(self, frame: VideoFrame, generation: int) -> bool:
        with self._lock:
            if generation != self._generation or len(self._frames) >= self.capacity:
                return False
            self._frames.append(frame)
            return True

    def push_latest(self, frame: VideoFrame, generation: int) -> bool:
        """For live sources: keep only the newest frames (drop the oldest when full)."""
        with self._lock:
            if generation != self._generation:
                return False
            if len(self._frames) >= self.capacity:
                self._frames.popleft()
            self._frames.append(frame)
            return True

    def mark_end(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self.end_of_stream = True

    def take_due(self, position: float) -> tuple[VideoFrame | None, int]:
        """The newest frame with ``time <= position``, and how many older due frames were dropped."""
        with self._lock:
            due: VideoFrame | None = None
            dropped = -1
            while self._frames and self._frames[0].time <= position:
                due = self._frames.popleft()
                dropped += 1
            return due, max(dropped, 0)

    def take_newest(self) -> tuple[VideoFrame | None, int]:
        with self._lock:
            if not self._frames:
                return None, 0
            frame = self._frames.pop()
            dropped = len(self._frames)
            self._frames.clear()
            return frame, dropped

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self.end_of_stream and not self._frames
