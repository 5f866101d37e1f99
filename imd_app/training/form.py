"""The job form: the starting point and the knobs of a training job. No logic beyond
turning widgets into a :class:`JobSpec` and back."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from imd_app.training.spec import JobSpec
from imd_app.user_data import user_data_dir

# The order is the stacked pages' order.
START_CHOICES = (
    ("demo", "Embedded demo model"),
    ("model", "A model folder"),
    ("backbones", "Pretrained backbones"),
    ("kinetics400", "Kinetics-400 model (I3D + YAMNet, frozen features)"),
)
# Good starting values per kind of start; the form swaps them while the user has not
# changed them (a head on frozen features wants a higher rate and more, much cheaper, epochs).
IMD_DEFAULTS = {
    "learning_rate": JobSpec().learning_rate,
    "epochs": JobSpec().epochs,
    "batch_size": JobSpec().batch_size,
}
PRETRAINED_DEFAULTS = {"learning_rate": 1e-3, "epochs": 60, "batch_size": 16}


def default_spec() -> JobSpec:
    """A new job: on the real-world model when it is installed, else on the demo."""
    from imd_core.resources import kinetics400_installed

    spec = JobSpec(run_dir=default_run_dir())
    if kinetics400_installed():
        spec = spec.replace(start_from="kinetics400", **PRETRAINED_DEFAULTS)
    return spec


def default_run_dir() -> str:
    """A fresh run folder under the user data folder."""
    return str(user_data_dir() / "runs" / time.strftime("run-%Y%m%d-%H%M%S"))


def _path_row(edit: QLineEdit, caption: str, parent: QWidget) -> QWidget:
    row = QWidget(parent)
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    button = QPushButton("…", row)
    button.setFixedWidth(28)
    button.clicked.connect(lambda: _choose_folder(edit, caption, parent))
    layout.addWidget(button)
    return row


def _choose_folder(edit: QLineEdit, caption: str, parent: QWidget) -> None:
    folder = QFileDialog.getExistingDirectory(parent, caption, edit.text() or str(Path.home()))
    if folder:
        edit.setText(folder)


class JobForm(QWidget):
    """Widgets for every :class:`JobSpec` field except the dataset (the dataset panel's)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        start_box = QGroupBox("Starting point", self)
        start_form = QFormLayout(start_box)
        self.start_from = QComboBox(start_box)
        for value, text in START_CHOICES:
            self.start_from.addItem(text, value)
        start_form.addRow("Start from", self.start_from)
        self.start_pages = QStackedWidget(start_box)
        self.start_pages.addWidget(QWidget())  # demo: nothing to choose
        model_page = QWidget()
        model_form = QFormLayout(model_page)
        model_form.setContentsMargins(0, 0, 0, 0)
        self.model_dir = QLineEdit(model_page)
        self.model_dir.setPlaceholderText("a folder with config.json and model.safetensors")
        model_form.addRow("Model folder", _path_row(self.model_dir, "Model folder", self))
        self.start_pages.addWidget(model_page)
        bb_page = QWidget()
        bb_form = QFormLayout(bb_page)
        bb_form.setContentsMargins(0, 0, 0, 0)
        self.ast_source = QLineEdit(bb_page)
        self.ast_source.setPlaceholderText("hub id or folder (empty: the size's default)")
        self.vit_source = QLineEdit(bb_page)
        self.vit_source.setPlaceholderText("timm hub id, weights file or folder (empty: random init)")
        self.text_encoder = QLineEdit(bb_page)
        self.text_encoder.setPlaceholderText("hub id or folder (empty: all-MiniLM-L6-v2)")
        bb_form.addRow("AST", _path_row(self.ast_source, "AST folder", self))
        bb_form.addRow("ViT", _path_row(self.vit_source, "ViT folder", self))
        bb_form.addRow("SAVLD text encoder", _path_row(self.text_encoder, "Text encoder folder", self))
        self.start_pages.addWidget(bb_page)
        self.start_pages.addWidget(QWidget())  # kinetics400: nothing to choose
        start_form.addRow(self.start_pages)
        layout.addWidget(start_box)

        train_box = QGroupBox("Training", self)
        form = QFormLayout(train_box)
        self.config = QComboBox(train_box)
        self.config.addItems(["tiny", "small", "base", "large", "demo"])
        form.addRow("Model size / recipe", self.config)
        self.epochs = QSpinBox(train_box)
        self.epochs.setRange(1, 10_000)
        form.addRow("Epochs", self.epochs)
        self.batch_size = QSpinBox(train_box)
        self.batch_size.setRange(1, 4096)
        form.addRow("Batch size", self.batch_size)
        self.learning_rate = QDoubleSpinBox(train_box)
        self.learning_rate.setDecimals(6)
        self.learning_rate.setRange(0.000001, 0.5)
        self.learning_rate.setSingleStep(0.00005)
        form.addRow("Learning rate", self.learning_rate)
        self.num_frames = QSpinBox(train_box)
        self.num_frames.setRange(1, 64)
        form.addRow("Frames per clip", self.num_frames)
        self.motion = QComboBox(train_box)
        self.motion.addItems(["diff", "flow"])
        form.addRow("Motion stream", self.motion)
        self.device = QComboBox(train_box)
        self.device.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device", self.device)
        layout.addWidget(train_box)

        imd_box = QGroupBox("IMD", self)
        imd_form = QFormLayout(imd_box)
        self.imd_enabled = QCheckBox("Learnable irrelevant modality dropout", imd_box)
        imd_form.addRow(self.imd_enabled)
        self.tag_top_k = QSpinBox(imd_box)
        self.tag_top_k.setRange(0, 527)
        self.tag_top_k.setSpecialValueText("model's own")  # 0: keep the starting model's rule
        imd_form.addRow("AST tags (top-k)", self.tag_top_k)
        self.relevance_tau = QDoubleSpinBox(imd_box)
        self.relevance_tau.setRange(0.0, 0.99)
        self.relevance_tau.setSingleStep(0.05)
        imd_form.addRow("Relevance IoU threshold τ", self.relevance_tau)
        self.relevance_weight = QDoubleSpinBox(imd_box)
        self.relevance_weight.setRange(0.0, 100.0)
        imd_form.addRow("Relevance loss weight", self.relevance_weight)
        self.ast_trainable = QCheckBox("Fine-tune the AST (slower: no cache)", imd_box)
        imd_form.addRow(self.ast_trainable)
        self.unfreeze_video = QCheckBox("Train I3D too (unfreeze; for a GPU)", imd_box)
        self.unfreeze_video.setToolTip(
            "Kinetics-400 starts only: fine-tune the video backbone as well as the head "
            "(frames are cached with the features; minutes per epoch on a CPU)"
        )
        imd_form.addRow(self.unfreeze_video)
        self.cross_modal_p = QDoubleSpinBox(imd_box)
        self.cross_modal_p.setRange(0.0, 1.0)
        self.cross_modal_p.setSingleStep(0.1)
        imd_form.addRow("Cross-modality augmentation p", self.cross_modal_p)
        layout.addWidget(imd_box)

        out_box = QGroupBox("Run", self)
        out_form = QFormLayout(out_box)
        self.run_dir = QLineEdit(out_box)
        out_form.addRow("Run folder", _path_row(self.run_dir, "Run folder", self))
        self.extra_set = QLineEdit(out_box)
        self.extra_set.setPlaceholderText("optional: key=value … (passed to imd train --set)")
        out_form.addRow("Advanced", self.extra_set)
        layout.addWidget(out_box)
        layout.addStretch(1)

        self.start_from.currentIndexChanged.connect(self._on_start_from_changed)
        self.model_dir.textChanged.connect(self._update_enabled)
        for widget in self.findChildren(QWidget):
            if isinstance(widget, QLineEdit):
                widget.textChanged.connect(self.changed)
            elif isinstance(widget, QComboBox):
                widget.currentIndexChanged.connect(self.changed)
            elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                widget.valueChanged.connect(self.changed)
            elif isinstance(widget, QCheckBox):
                widget.toggled.connect(self.changed)
        self._pretrained = False
        self.set_spec(default_spec())

    def _on_start_from_changed(self, index: int) -> None:
        self.start_pages.setCurrentIndex(index)
        self._update_enabled()

    def _update_enabled(self) -> None:
        start = self.start_from.currentData()
        pretrained = JobSpec(
            start_from=start, model_dir=self.model_dir.text().strip()
        ).starts_from_pretrained()
        # A model folder brings its own architecture inputs; a pretrained one its whole model.
        self.num_frames.setEnabled(start == "backbones")
        self.motion.setEnabled(start == "backbones")
        for widget in (self.config, self.imd_enabled, self.tag_top_k, self.relevance_tau, self.ast_trainable,
                       self.cross_modal_p):  # fmt: skip
            widget.setEnabled(not pretrained)
        self.unfreeze_video.setEnabled(pretrained)
        if pretrained != self._pretrained:
            self._swap_defaults(PRETRAINED_DEFAULTS if pretrained else IMD_DEFAULTS)
            self._pretrained = pretrained

    def _swap_defaults(self, new: dict[str, float]) -> None:
        old = IMD_DEFAULTS if new is PRETRAINED_DEFAULTS else PRETRAINED_DEFAULTS
        widgets = {"learning_rate": self.learning_rate, "epochs": self.epochs, "batch_size": self.batch_size}
        for name, widget in widgets.items():
            if widget.value() == old[name]:  # untouched by the user
                widget.setValue(new[name])

    def set_spec(self, spec: JobSpec) -> None:
        """Shows ``spec`` in the widgets (the dataset fields are not the form's)."""
        self._pretrained = spec.starts_from_pretrained()  # the spec's values are the user's: no swap
        self.model_dir.setText(spec.model_dir)
        self.start_from.setCurrentIndex(max(0, self.start_from.findData(spec.start_from)))
        self._on_start_from_changed(self.start_from.currentIndex())
        self.ast_source.setText(spec.ast_source)
        self.vit_source.setText(spec.vit_source)
        self.text_encoder.setText(spec.text_encoder)
        self.config.setCurrentText(spec.config)
        self.epochs.setValue(spec.epochs)
        self.batch_size.setValue(spec.batch_size)
        self.learning_rate.setValue(spec.learning_rate)
        self.num_frames.setValue(spec.num_frames)
        self.motion.setCurrentText(spec.motion)
        self.device.setCurrentText(spec.device)
        self.imd_enabled.setChecked(spec.imd_enabled)
        self.tag_top_k.setValue(spec.tag_top_k)
        self.relevance_tau.setValue(spec.relevance_tau)
        self.relevance_weight.setValue(spec.relevance_weight)
        self.ast_trainable.setChecked(spec.ast_trainable)
        self.cross_modal_p.setValue(spec.cross_modal_p)
        self.unfreeze_video.setChecked(spec.unfreeze_video)
        self.run_dir.setText(spec.run_dir)
        self.extra_set.setText(" ".join(spec.extra_set))

    def spec(self, base: JobSpec | None = None) -> JobSpec:
        """The form's values on top of ``base`` (which carries the dataset fields)."""
        base = base or JobSpec()
        return base.replace(
            start_from=self.start_from.currentData(),
            model_dir=self.model_dir.text().strip(),
            ast_source=self.ast_source.text().strip(),
            vit_source=self.vit_source.text().strip(),
            text_encoder=self.text_encoder.text().strip(),
            config=self.config.currentText(),
            epochs=self.epochs.value(),
            batch_size=self.batch_size.value(),
            learning_rate=self.learning_rate.value(),
            num_frames=self.num_frames.value(),
            motion=self.motion.currentText(),
            device=self.device.currentText(),
            imd_enabled=self.imd_enabled.isChecked(),
            tag_top_k=self.tag_top_k.value(),
            relevance_tau=self.relevance_tau.value(),
            relevance_weight=self.relevance_weight.value(),
            ast_trainable=self.ast_trainable.isChecked(),
            cross_modal_p=self.cross_modal_p.value(),
            unfreeze_video=self.unfreeze_video.isChecked(),
            run_dir=self.run_dir.text().strip(),
            extra_set=tuple(self.extra_set.text().split()),
        )
