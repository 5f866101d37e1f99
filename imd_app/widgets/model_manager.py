"""The model manager: what is loaded, load another folder, switch CPU/GPU."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from imd_app.state import ModelState
from imd_app.types import ModelInfo


def describe_parameters(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


class ModelManager(QDialog):
    load_requested = Signal(str)  # a model folder
    demo_requested = Signal()
    device_requested = Signal(str)  # "cpu" or "cuda"

    def __init__(self, state: ModelState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model manager")
        self.resize(560, 520)
        self._state = state
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, title in (
            ("folder", "Folder"),
            ("size", "Size"),
            ("parameters", "Parameters"),
            ("device", "Device"),
            ("labels", "Action labels"),
            ("tagger", "Audio tagger"),
            ("savld", "SAVLD"),
            ("inputs", "Inputs"),
        ):
            label = QLabel("—")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(title, label)
            self.fields[key] = label
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setPlaceholderText(
            "Labels and their SAVLD audio labels appear here once a model is loaded."
        )
        self.status = QLabel("")
        self.status.setWordWrap(True)
        load = QPushButton("Load model folder…")
        load.clicked.connect(self.load_folder_dialog)
        demo = QPushButton("Load demo model")
        demo.clicked.connect(self.demo_requested)
        # the real-world model by name; disabled (with the reason) until setup has built it
        from imd_core.resources import kinetics400_installed

        self.kinetics_button = QPushButton("Load Kinetics-400 model")
        self.kinetics_button.clicked.connect(lambda: self.load_requested.emit("kinetics400"))
        if not kinetics400_installed():
            self.kinetics_button.setEnabled(False)
            self.kinetics_button.setToolTip(
                "not built: run `imd pretrained build` (bash scripts/setup.sh does it)"
            )
        self.device_box = QComboBox()
        self.device_box.addItem("CPU", "cpu")
        self.device_box.addItem("GPU (CUDA)", "cuda")
        self.device_box.activated.connect(lambda i: self.device_requested.emit(self.device_box.itemData(i)))
        buttons = QHBoxLayout()
        buttons.addWidget(load)
        buttons.addWidget(self.kinetics_button)
        buttons.addWidget(demo)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Device"))
        buttons.addWidget(self.device_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.details, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        state.info_changed.connect(self._on_state_info_changed)
        state.loading_changed.connect(self._on_state_status_changed)
        state.error_changed.connect(self._on_state_status_changed)
        state.spec_changed.connect(self._on_state_spec_changed)
        state.cuda_available_changed.connect(self._on_state_cuda_available_changed)
        self._on_state_cuda_available_changed(state.cuda_available)
        self._on_state_info_changed(state.info)
        self._on_state_spec_changed(state.spec)
        self._on_state_status_changed()

    def load_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose a model folder (config.json, model.safetensors…)"
        )
        if folder:
            self.load_requested.emit(folder)

    def _on_state_cuda_available_changed(self, available: bool) -> None:
        item = self.device_box.model().item(1)
        item.setEnabled(available)
        item.setToolTip("" if available else "no CUDA device on this machine")

    def _on_state_spec_changed(self, spec) -> None:
        if spec is not None:
            self.device_box.setCurrentIndex(1 if spec.device == "cuda" else 0)

    def _on_state_status_changed(self, *_args) -> None:
        if self._state.loading:
            self.status.setText("Loading…")
            self.status.setStyleSheet("")
        elif self._state.error:
            self.status.setText(self._state.error)
            self.status.setStyleSheet("color: #d04040;")
        else:
            self.status.setText("Ready" if self._state.info else "No model loaded")
            self.status.setStyleSheet("")

    def _on_state_info_changed(self, info: ModelInfo | None) -> None:
        if info is None:
            for label in self.fields.values():
                label.setText("—")
            self.details.clear()
            return
        f = self.fields
        f["folder"].setText(str(info.folder))
        f["size"].setText(info.size)
        f["parameters"].setText(describe_parameters(info.parameters))
        f["device"].setText(info.device)
        shown = ", ".join(info.labels[:8]) + (" …" if len(info.labels) > 8 else "")
        f["labels"].setText(f"{len(info.labels)}: {shown}")
        f["tagger"].setText(f"{info.tagger} · {info.audio_labels} audio labels")
        f["savld"].setText(
            f"top-{info.savld_top_k} audio labels per action"
            if info.savld
            else "none (audio relevance without SAVLD)"
        )
        f["inputs"].setText(
            f"{info.num_frames} frames at {info.image_size} px · {info.audio_seconds:.2f} s audio"
        )
        savld = dict(info.savld)
        lines = [f"{label}  →  {', '.join(savld.get(label, ())) or '—'}" for label in info.labels]
        self.details.setPlainText("\n".join(lines))
