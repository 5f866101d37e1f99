"""Fixtures for the app's tests: a tiny real model folder, real clips, isolated settings.

The model is a real :class:`IMDModel` (one ViT block of width 32, a one-layer AST over
six AudioSet labels, a hand-written SAVLD) saved with ``save_model`` and loaded by the
app through the real loading code. Clips are real H.264/AAC files from
``tests/media_factory.py``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

LABELS = ("playing guitar", "chopping wood", "dribbling basketball")
AUDIO_LABELS = ["Speech", "Music", "Guitar", "Chopping (food)", "Wood", "Bouncing"]
SAVLD_MAPPING = {
    "playing guitar": ["Guitar", "Music"],
    "chopping wood": ["Wood", "Chopping (food)"],
    "dribbling basketball": ["Bouncing", "Speech"],
}


def build_tiny_model(folder: Path) -> Path:
    from imd_core.model.checkpoint import save_model
    from imd_core.model.config import TINY_AST_CONFIG, ModelConfig
    from imd_core.model.imd_model import IMDModel
    from imd_core.model.savld import Savld

    ast = dict(
        TINY_AST_CONFIG,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=dict(enumerate(AUDIO_LABELS)),
        label2id={a: i for i, a in enumerate(AUDIO_LABELS)},
        max_length=128,
    )
    cfg = ModelConfig(
        size="tiny",
        labels=LABELS,
        image_size=32,
        patch_size=16,
        embed_dim=32,
        depth=1,
        num_heads=2,
        st_depth=1,
        st_dim=16,
        st_heads=2,
        num_frames=4,
        audio_seconds=1.28,
        ast_config=ast,
        relevance_hidden=16,
    )
    model = IMDModel(cfg, load_pretrained=False)
    mapping = {
        v: [{"label": a, "score": 0.9 - 0.1 * i} for i, a in enumerate(tags)]
        for v, tags in SAVLD_MAPPING.items()
    }
    savld = Savld("hand-written for tests", "mean", 2, list(LABELS), AUDIO_LABELS, mapping)
    save_model(model, folder, savld=savld)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny_model")


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory) -> Path:
    from tests.media_factory import write_clip

    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "guitar.mp4", seconds=4.0, fps=15, width=64, height=48, audio_hz=440.0)
    write_clip(folder / "silent video.mp4", seconds=3.0, fps=15, width=64, height=48, audio_hz=None)
    (folder / "sub").mkdir()
    write_clip(folder / "sub" / "wood.mp4", seconds=2.0, fps=15, width=48, height=64, audio_hz=220.0)
    return folder


@pytest.fixture(scope="session")
def clip(clips_dir) -> Path:
    return clips_dir / "guitar.mp4"


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    """Keep QStandardPaths and the training history out of the real home folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("IMD_APP_DATA_DIR", str(tmp_path / "appdata"))


@pytest.fixture
def no_leaked_threads():
    """Fails a test that leaves Python threads running (Qt threads are checked by the tests)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    import time

    deadline = time.monotonic() + 5
    while True:
        leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads still running: {[t.name for t in leaked]}"


@pytest.fixture
def window(qtbot, settings, no_leaked_threads):
    """A main window with isolated settings, muted audio, and every worker joined at the end."""
    from imd_app.main_window import MainWindow

    w = MainWindow(settings=settings, use_audio_device=False, cuda_available=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()
    assert not w.player.decode_thread.isRunning()
    assert not w.player.infer_thread.isRunning()
    assert w.batch.pool.activeThreadCount() == 0


def load_model_and_wait(qtbot, window, folder) -> None:
    """Loads a model folder in the window and waits until it is ready (or failed: asserted)."""
    window.load_model(str(folder))
    qtbot.waitUntil(
        lambda: window.model_state.info is not None or bool(window.model_state.error), timeout=60000
    )
    assert window.model_state.error == ""


def batch_finished(window) -> bool:
    """Every batch row has an end state and the batch is idle."""
    items = window.batch_state.items
    return (
        bool(items)
        and all(i.status in ("done", "failed", "cancelled") for i in items)
        and not window.batch.busy
    )
