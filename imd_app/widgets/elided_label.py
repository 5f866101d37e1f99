"""A one-line label that never widens its layout: long text is elided, the tooltip has it all."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """A ``QLabel`` for paths and class names whose length must not move the layout.

    ``text()`` is the full text; what is shown is cut to the label's width with an
    ellipsis (``mode``), and the full text is the tooltip whenever it is cut. The size
    hint is ``hint_chars`` average characters whatever the text, and the horizontal
    policy is ``Ignored``: the layout decides the width, the text never does.
    """

    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        *,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle,
        hint_chars: int = 20,
    ) -> None:
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self._hint_chars = hint_chars
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def text(self) -> str:
        return self._full

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self._full = text
        self._elide()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        hint = super().sizeHint()
        return QSize(self.fontMetrics().averageCharWidth() * self._hint_chars, hint.height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        hint = super().minimumSizeHint()
        return QSize(self.fontMetrics().averageCharWidth() * 3, hint.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, self._mode, max(self.contentsRect().width(), 1))
        super().setText(shown)
        self.setToolTip(self._full if shown != self._full else "")
