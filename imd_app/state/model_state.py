"""Which model is requested, which is loaded, and whether loading is under way."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from imd_app.types import ModelInfo, ModelSpec


class ModelState(QObject):
    spec_changed = Signal(object)  # ModelSpec | None
    info_changed = Signal(object)  # ModelInfo | None
    loading_changed = Signal(bool)
    error_changed = Signal(str)
    cuda_available_changed = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self._spec: ModelSpec | None = None
        self._info: ModelInfo | None = None
        self._loading = False
        self._error = ""
        self._cuda_available = False

    @property
    def spec(self) -> ModelSpec | None:
        return self._spec

    def set_spec(self, spec: ModelSpec | None) -> None:
        if spec != self._spec:
            self._spec = spec
            self.spec_changed.emit(spec)

    @property
    def info(self) -> ModelInfo | None:
        return self._info

    def set_info(self, info: ModelInfo | None) -> None:
        if info != self._info:
            self._info = info
            self.info_changed.emit(info)

    @property
    def loading(self) -> bool:
        return self._loading

    def set_loading(self, loading: bool) -> None:
        if loading != self._loading:
            self._loading = loading
            self.loading_changed.emit(loading)

    @property
    def error(self) -> str:
        return self._error

    def set_error(self, error: str) -> None:
        if error != self._error:
            self._error = error
            self.error_changed.emit(error)

    @property
    def cuda_available(self) -> bool:
        return self._cuda_available

    def set_cuda_available(self, available: bool) -> None:
        if available != self._cuda_available:
            self._cuda_available = available
            self.cuda_available_changed.emit(available)
