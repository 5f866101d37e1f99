"""One verdict per file in the app (issue 15 item 4): the player and the batch tab reject a
still image and a truncated file with the reason ``imd predict`` and ``imd data check`` give;
the player says so when playback reaches the truncation instead of freezing."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from imd_core.errors import DecodeError
from imd_core.media.decode import decode_clip
from tests.media_factory import write_broken, write_damaged, write_still_image

from .conftest import batch_finished as _finished
from .conftest import load_model_and_wait as _load

pytestmark = pytest.mark.gui


def _core_reason(path) -> str:
    with pytest.raises(DecodeError) as info:
        decode_clip(path, num_frames=8)
    return str(info.value).removeprefix(f"{path}: ")


def _close_dialogs() -> None:
    for b in [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]:
        b.close()


@pytest.fixture
def bad_files(tmp_path):
    return write_still_image(tmp_path / "photo.mp4"), write_broken(tmp_path / "cut.mp4", "truncated-stream")


def test_player_rejects_a_still_image_and_reports_a_truncation_when_it_reaches_it(qtbot, window, bad_files):
    still, cut = bad_files
    window.open_in_player(str(still))
    qtbot.waitUntil(lambda: bool(window.player_state.error), timeout=15000)
    assert window.player_state.error == f"{still}: {_core_reason(still)}"
    _close_dialogs()
    window.open_in_player(str(cut))
    qtbot.waitUntil(lambda: window.player_state.media is not None, timeout=15000)  # it opens and plays...
    qtbot.waitUntil(lambda: bool(window.player_state.error), timeout=20000)  # ...then says why it stops
    assert window.player_state.error == f"{cut}: {_core_reason(cut)}"
    assert window.player_state.position < 2.5
    _close_dialogs()


def test_batch_gives_the_same_verdicts_and_a_warning_for_damaged_packets(
    qtbot, window, tiny_model_dir, bad_files, tmp_path
):
    still, cut = bad_files
    damaged = write_damaged(tmp_path / "dmg.mp4")
    _load(qtbot, window, tiny_model_dir)
    window.batch.add_paths([str(still), str(cut), str(damaged)])
    qtbot.waitUntil(lambda: _finished(window), timeout=120000)
    items = {i.path: i for i in window.batch_state.items}
    for bad in (still, cut):
        assert items[str(bad)].status == "failed"
        assert items[str(bad)].message.endswith(_core_reason(bad))
    assert items[str(damaged)].status == "done" and "warning: " in items[str(damaged)].message
    assert "damaged packets skipped" in items[str(damaged)].message
    out = tmp_path / "r.jsonl"
    window.batch_tab.export_requested.emit(str(out))
    assert '"warnings": ["' in out.read_text(encoding="utf-8")
