"""Paints the presented frame, a notice line and (optionally) the debug overlay."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget


class VideoView(QWidget):
    """Paints frames; ``resized`` tells the decoder what size to scale them to (off this thread)."""

    resized = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._notice = ""
        self._overlay_lines: list[str] = []
        self.overlay_visible = False
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self.update()

    @property
    def image(self) -> QImage | None:
        return self._image

    def set_notice(self, text: str) -> None:
        if text != self._notice:
            self._notice = text
            self.update()

    def set_overlay_visible(self, visible: bool) -> None:
        self.overlay_visible = visible
        self.update()

    def set_overlay_lines(self, lines: list[str]) -> None:
        self._overlay_lines = lines
        if self.overlay_visible:
            self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self.resized.emit(self.width(), self.height())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        if self._image is not None and not self._image.isNull():
            size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - size.width()) / 2
            y = (self.height() - size.height()) / 2
            if size == self._image.size():  # already scaled by the decoder: a plain copy
                p.drawImage(int(x), int(y), self._image)
            else:  # until the decoder catches up with a resize: fast, unsmoothed scaling
                p.drawImage(QRectF(x, y, size.width(), size.height()), self._image)
        else:
            p.setPen(QColor(160, 160, 160))
            p.drawText(
                self.rect(),
                Qt.AlignmentFlag.AlignCenter,
                "Open a video (Ctrl+O), drop one here, or open a webcam (Ctrl+Shift+W)",
            )
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.0))
        p.setFont(font)
        if self._notice:
            r = QRectF(8, self.height() - 30, self.width() - 16, 24)
            p.fillRect(r, QColor(120, 60, 0, 200))
            p.setPen(QColor(255, 255, 255))
            p.drawText(
                r.adjusted(6, 0, -6, 0),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                self._notice,
            )
        if self.overlay_visible and self._overlay_lines:
            line_h = p.fontMetrics().height()
            r = QRectF(8, 8, 300, line_h * len(self._overlay_lines) + 8)
            p.fillRect(r, QColor(0, 0, 0, 170))
            p.setPen(QColor(120, 255, 120))
            for i, line in enumerate(self._overlay_lines):
                p.drawText(QRectF(14, 12 + i * line_h, 290, line_h), Qt.AlignmentFlag.AlignLeft, line)
        p.end()
