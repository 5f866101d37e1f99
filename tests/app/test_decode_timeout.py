"""No file can freeze the app: the batch's decodes and the player's open are bounded (issue 4).

The hanging input is the one of ``imd data check``'s and ``imd predict``'s tests: an
``ffconcat`` list naming a FIFO nobody writes to, which blocks in ``open(2)`` inside
``avformat_open_input`` (in-process, nothing could ever stop it). The player's probe runs
in a sandbox process; its playback decodes in-process, on a reader thread that a file
hanging mid-stream leaves blocked while the player reports it and goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
import time

import av
import pytest

from tests.core.data.test_check_timeout import _hanging_clip

from .conftest import batch_finished as _finished
from .conftest import load_model_and_wait as _load

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(
        not hasattr(os, "mkfifo") or "concat" not in av.formats_available,
        reason="needs named pipes (POSIX) and FFmpeg's concat demuxer",
    ),
]


def _decode_workers() -> list:
    """Live decoding worker processes of this process (``active_children`` also reaps the dead)."""
    return [p for p in multiprocessing.active_children() if p.name == "imd-sandbox"]


def _decoding(window, index: int) -> bool:
    """Row ``index`` is running and the batch waits on its sandbox (which keys files by path)."""
    items, sandbox = window.batch_state.items, window.batch.sandbox
    running = len(items) > index and items[index].status == "running"
    return running and sandbox is not None and sandbox.waiting_key == items[index].path


def _shutdown_quickly(window) -> float:
    t0 = time.monotonic()
    window.shutdown()
    elapsed = time.monotonic() - t0
    assert not _decode_workers()  # no orphan: every worker process was stopped and reaped
    return elapsed


@pytest.mark.timeout(180)
def test_a_hanging_file_times_out_and_the_batch_goes_on(qtbot, window, tiny_model_dir, clips_dir, tmp_path):
    _load(qtbot, window, tiny_model_dir)
    # the user setting; 5 s, not 1 or 3: under load 6 on 2 cores a good file's decode alone
    # took over 1 s, and a CI clone run beside other test runs once failed a good file at 3 s
    window.batch_tab.timeout_box.setValue(5)
    assert window.batch.decode_timeout == 5.0 and float(window.settings.value("decode/timeout")) == 5.0
    good_a, good_b = clips_dir / "guitar.mp4", clips_dir / "sub" / "wood.mp4"
    hang = _hanging_clip(tmp_path)
    t0 = time.monotonic()
    window.batch.add_paths([str(good_a), str(hang), str(good_b)])
    qtbot.waitUntil(lambda: _finished(window), timeout=90000)
    elapsed = time.monotonic() - t0
    items = window.batch_state.items
    assert [os.path.basename(i.path) for i in items] == ["guitar.mp4", "hangs.mp4", "wood.mp4"]
    assert [i.status for i in items] == ["done", "failed", "done"], [i.message for i in items]
    assert items[1].message.startswith("decode timed out after 5 s"), items[1].message
    assert {r.result.path for r in window.batch_state.rows} == {str(good_a), str(good_b)}
    assert window.batch_tab.proxy.rowCount() == 2
    # 5 s + 2 s grace + a fresh sandbox for wood.mp4 + the tiny model, on a loaded 2-core machine
    assert elapsed < 60, elapsed
    assert _shutdown_quickly(window) < 10


@pytest.mark.timeout(180)
def test_cancel_and_close_end_a_hanging_decode_at_once(qtbot, window, tiny_model_dir, clips_dir, tmp_path):
    _load(qtbot, window, tiny_model_dir)
    assert window.batch.decode_timeout == 60.0  # the default: no test below may wait for it
    hang = _hanging_clip(tmp_path)
    window.batch.add_paths([str(hang), str(clips_dir / "guitar.mp4")])
    qtbot.waitUntil(lambda: _decoding(window, 0), timeout=60000)
    t0 = time.monotonic()
    window.batch.cancel_item(0)
    qtbot.waitUntil(lambda: _finished(window), timeout=60000)
    assert time.monotonic() - t0 < 30  # not the 60 s deadline
    assert [i.status for i in window.batch_state.items] == ["cancelled", "done"]

    # closing the app while a file hangs: the sandbox is killed, nothing waits for 60 s
    window.batch.add_paths([str(hang)])
    qtbot.waitUntil(lambda: _decoding(window, 2), timeout=60000)
    assert _shutdown_quickly(window) < 10


@pytest.mark.timeout(120)
def test_the_player_reports_a_file_that_hangs_at_open_and_stays_usable(qtbot, window, clips_dir, tmp_path):
    from imd_app.stall_monitor import StallMonitor

    window.batch_tab.timeout_box.setValue(1)
    hang = _hanging_clip(tmp_path)
    monitor = StallMonitor()
    monitor.start()
    t0 = time.monotonic()
    window.open_in_player(str(hang))
    qtbot.waitUntil(lambda: "decode timed out" in window.player_state.error, timeout=60000)
    monitor.stop()
    assert time.monotonic() - t0 < 45
    assert window.player_state.error.startswith(f"{hang}: decode timed out after 1 s"), (
        window.player_state.error
    )
    assert "decode timed out" in window.statusBar().currentMessage()
    assert window.player_state.media is None
    assert monitor.worst_ms < 1500, monitor.worst_ms  # the GUI thread never waited on the probe
    # the next file plays (a fresh sandbox process replaced the killed one)
    window.open_in_player(str(clips_dir / "guitar.mp4"))
    qtbot.waitUntil(lambda: window.player_state.media is not None, timeout=30000)
    assert window.player_state.media.source == str(clips_dir / "guitar.mp4")


@pytest.mark.timeout(120)
def test_a_newer_open_or_closing_the_app_ends_a_hanging_open_at_once(qtbot, window, clips_dir, tmp_path):
    hang = _hanging_clip(tmp_path)
    decoder = window.player.decoder
    window.open_in_player(str(hang))  # the default 60 s timeout
    qtbot.waitUntil(lambda: decoder.probing, timeout=30000)
    t0 = time.monotonic()
    window.open_in_player(str(clips_dir / "guitar.mp4"))  # the newest request wins
    qtbot.waitUntil(lambda: window.player_state.media is not None, timeout=30000)
    assert time.monotonic() - t0 < 30
    assert window.player_state.error == ""
    window.open_in_player(str(hang))
    qtbot.waitUntil(lambda: decoder.probing, timeout=30000)
    assert _shutdown_quickly(window) < 10
    assert not window.player.decode_thread.isRunning()


def _hanging_mid_stream(folder, good) -> str:
    """An ``ffconcat`` list that declares 4 s: ``good`` (2 s) plays, then the FIFO blocks the demuxer."""
    shutil.copy(good, folder / "first.mp4")  # the concat demuxer's safe mode wants relative names
    os.mkfifo(folder / "later.fifo")
    path = folder / "hangs_later.mp4"
    path.write_text("ffconcat version 1.0\nfile first.mp4\nduration 2\nfile later.fifo\nduration 2\n")
    return str(path)


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "imd-file-reader"]


def _release_and_see_the_readers_end(qtbot, folder) -> None:
    """Opens the FIFO's write end (what a stalled disk coming back amounts to): the reader
    threads left blocked in ``open(2)`` return, see they were abandoned, and end."""
    assert _reader_threads() and all(t.daemon for t in _reader_threads())  # blocked, and never joined
    os.close(os.open(folder / "later.fifo", os.O_WRONLY | os.O_NONBLOCK))
    qtbot.waitUntil(lambda: not _reader_threads(), timeout=10000)


@pytest.mark.timeout(120)
def test_a_file_that_hangs_mid_playback_is_stopped_and_reported(qtbot, window, clips_dir, tmp_path):
    from imd_app.stall_monitor import StallMonitor

    window.batch_tab.timeout_box.setValue(1)
    path = _hanging_mid_stream(tmp_path, clips_dir / "sub" / "wood.mp4")
    window.open_in_player(path)
    qtbot.waitUntil(lambda: window.player_state.media is not None, timeout=30000)  # the probe passes
    assert window.player_state.media.duration == pytest.approx(4.0)
    decoder = window.player.decoder
    qtbot.waitUntil(lambda: decoder.stuck, timeout=30000)  # the reader is blocked at the FIFO
    t0 = time.monotonic()
    monitor = StallMonitor()
    monitor.start()
    qtbot.waitUntil(lambda: "decode timed out" in window.player_state.error, timeout=30000)
    monitor.stop()
    assert time.monotonic() - t0 < 5  # the 1 s budget from when the reader gave nothing, not later
    assert monitor.worst_ms < 1500, monitor.worst_ms  # a thread blocked inside FFmpeg holds no GIL
    assert window.player_state.error.startswith(f"{path}: decode timed out after 1 s ("), (
        window.player_state.error
    )
    assert window.player_state.media is not None  # the good part was played; the player is paused
    assert _shutdown_quickly(window) < 10
    _release_and_see_the_readers_end(qtbot, tmp_path)


@pytest.mark.timeout(120)
def test_a_seek_or_closing_the_app_does_not_wait_for_a_read_stuck_mid_file(
    qtbot, window, clips_dir, tmp_path
):
    path = _hanging_mid_stream(tmp_path, clips_dir / "sub" / "wood.mp4")  # the default 60 s timeout
    window.open_in_player(path)
    qtbot.waitUntil(lambda: window.player_state.media is not None, timeout=30000)
    decoder = window.player.decoder
    qtbot.waitUntil(lambda: decoder.stuck, timeout=30000)  # read ahead to the FIFO, blocked there
    shown = window.player.frames_presented
    window.player.seek(0.0)  # the stuck reader thread is left behind; a new one plays again (the
    # concat demuxer refuses seeks past 0: "decoding stopped (PermissionError ...)")
    qtbot.waitUntil(lambda: window.player.frames_presented >= shown + 5, timeout=30000)
    assert window.player_state.error == ""
    qtbot.waitUntil(lambda: decoder.stuck, timeout=30000)  # at the FIFO again
    assert len(_reader_threads()) == 2  # one leaked thread per hang, each blocked in open(2)
    assert _shutdown_quickly(window) < 10
    _release_and_see_the_readers_end(qtbot, tmp_path)
