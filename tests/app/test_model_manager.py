"""The model manager dialog: what is loaded, loading errors, the device switch."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_model_manager_shows_the_loaded_model_and_errors(qtbot, window, tiny_model_dir, tmp_path):
    mm = window.model_manager
    window.show_model_manager()
    assert mm.isVisible()
    assert not mm.device_box.model().item(1).isEnabled()  # no CUDA here: the GPU entry is disabled
    window.load_model(str(tiny_model_dir))
    qtbot.waitUntil(
        lambda: (
            (window.model_state.info is not None or bool(window.model_state.error))
            and not window.model_state.loading
        ),
        timeout=60000,
    )
    assert window.model_state.error == ""
    assert mm.fields["folder"].text() == str(tiny_model_dir)
    assert mm.fields["size"].text() == "tiny"
    assert mm.fields["labels"].text().startswith("3: playing guitar")
    assert "6 audio labels" in mm.fields["tagger"].text()
    assert "top-2" in mm.fields["savld"].text()
    assert "playing guitar  →  Guitar, Music" in mm.details.toPlainText()
    assert mm.fields["device"].text() == "cpu"
    assert mm.status.text() == "Ready"
    empty = tmp_path / "empty"
    empty.mkdir()
    mm.load_requested.emit(str(empty))
    qtbot.waitUntil(lambda: bool(window.model_state.error), timeout=30000)
    assert "config.json" in mm.status.text()
    assert mm.fields["folder"].text() == str(tiny_model_dir)  # the working model stays loaded


def test_gpu_request_without_cuda_is_refused_with_a_message(qtbot, window):
    window.set_device("cuda")
    assert window.model_state.spec is None or window.model_state.spec.device == "cpu"
    assert "CUDA" in window.statusBar().currentMessage()
