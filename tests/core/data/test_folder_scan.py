"""Folder scans: each real folder walked once (link loops end), what is passed over said.

A ``self -> .`` link used to list every file about 40 times (``os.walk`` followed it until
the path grew too long) and a two-link loop hung ``imd data check``/``train``/``eval``
with memory growing; a broken link or a folder named ``x.mp4`` was dropped without a word.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from imd_core.data.check import check_index
from imd_core.data.manifest import load_dataset_index
from imd_core.inference.inputs import expand_inputs
from imd_core.media.walk import walk_media
from tests.media_factory import write_clip

ROOT = Path(__file__).resolve().parents[3]


def _clips(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_clip(folder / name, seconds=0.3, fps=10, width=32, height=32)


@pytest.fixture()
def looped(tmp_path):
    """DATA/{cls_a,cls_b}: a ``self -> .`` link, a two-link loop inside a class, a link across classes."""
    root = tmp_path / "data"
    _clips(root / "cls_a", "a1.mp4", "a2.mp4")
    _clips(root / "cls_a" / "sub1", "s1.mp4")
    _clips(root / "cls_a" / "sub2", "s2.mp4")
    (root / "cls_a" / "self").symlink_to(".")
    (root / "cls_a" / "sub1" / "to2").symlink_to("../sub2")
    (root / "cls_a" / "sub2" / "to1").symlink_to("../sub1")
    _clips(root / "cls_b", "b1.mp4")
    (root / "cls_b" / "to_a").symlink_to("../cls_a")  # would relabel cls_a's clips as cls_b
    (root / "self").symlink_to(".")  # not a class
    return root


@pytest.mark.timeout(60)
def test_link_loops_list_each_file_exactly_once(looped):
    t0 = time.monotonic()
    index = load_dataset_index(looped)
    assert time.monotonic() - t0 < 10
    got = sorted((Path(e.path).relative_to(looped).as_posix(), e.label) for e in index.entries)
    assert got == [
        ("cls_a/a1.mp4", "cls_a"), ("cls_a/a2.mp4", "cls_a"), ("cls_a/sub1/s1.mp4", "cls_a"),
        ("cls_a/sub2/s2.mp4", "cls_a"), ("cls_b/b1.mp4", "cls_b"),
    ]  # fmt: skip
    assert index.labels == ("cls_a", "cls_b")
    skipped = {Path(s.path).relative_to(looped).as_posix() for s in index.skipped}
    assert skipped == {"self", "cls_a/self", "cls_a/sub1/to2", "cls_a/sub2/to1", "cls_b/to_a"}


@pytest.mark.timeout(60)
def test_predict_folder_scan_walks_each_folder_once(looped):
    files, errors = expand_inputs([looped / "cls_a"])
    assert errors == []
    assert sorted(f.relative_to(looped).as_posix() for f in files) == [
        "cls_a/a1.mp4", "cls_a/a2.mp4", "cls_a/sub1/s1.mp4", "cls_a/sub2/s2.mp4",
    ]  # fmt: skip


def test_walk_follows_links_to_folders_outside(tmp_path):
    _clips(tmp_path / "elsewhere", "x.mp4")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "top" / "again").symlink_to(tmp_path / "elsewhere")
    files, skipped = walk_media(tmp_path / "top", lambda p: p.suffix == ".mp4")
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["top/again/x.mp4"]
    assert [(Path(s.path).name, "a second path" in s.reason) for s in skipped] == [("linked", True)]


@pytest.fixture()
def odd(tmp_path):
    """One good clip beside a broken link and a folder named like a clip."""
    root = tmp_path / "data"
    _clips(root / "cls", "good.mp4")
    (root / "cls" / "gone.mp4").symlink_to(root / "cls" / "does-not-exist.mp4")
    (root / "cls" / "x.mp4").mkdir()
    (root / "cls" / ".hidden.mp4").symlink_to("nowhere.mp4")  # hidden: passed over silently
    return root


def test_skipped_paths_are_warned_about_and_listed_by_data_check(odd, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="imd_core.data.manifest"):
        index = load_dataset_index(odd)
    assert [Path(e.path).name for e in index.entries] == ["good.mp4"]
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert set(reasons) == {"gone.mp4", "x.mp4"}
    assert "broken link" in reasons["gone.mp4"] and "does not exist" in reasons["gone.mp4"]
    assert "a folder named like a media file" in reasons["x.mp4"]
    logged = caplog.text
    assert "skipped" in logged and "gone.mp4" in logged and "x.mp4" in logged

    report = check_index(index, timeout=60)
    assert report.usable  # a warning, not an unusable file
    out = report.to_dict()
    assert {Path(s["path"]).name for s in out["skipped"]} == {"gone.mp4", "x.mp4"}
    text = report.format_text()
    assert "skipped" in text and "gone.mp4: broken link" in text

    proc = subprocess.run([sys.executable, "-m", "imd_core", "data", "check", str(odd), "--json"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {Path(s["path"]).name: bool(s["reason"]) for s in json.loads(proc.stdout)["skipped"]} == {
        "gone.mp4": True, "x.mp4": True,
    }  # fmt: skip
    assert "gone.mp4" in proc.stderr  # the logged warning


def test_predict_folder_scan_warns_about_what_it_skips(odd, caplog):
    with caplog.at_level(logging.WARNING, logger="imd_core.inference.inputs"):
        files, errors = expand_inputs([odd])
    assert [f.name for f in files] == ["good.mp4"] and errors == []
    assert "gone.mp4" in caplog.text and "x.mp4" in caplog.text and ".hidden" not in caplog.text


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "mkfifo") or "concat" not in av.formats_available,
                    reason="needs named pipes (POSIX) and FFmpeg's concat demuxer")  # fmt: skip
def test_ctrl_c_stops_data_check_at_once(tmp_path):
    folder = tmp_path / "data" / "cls"
    _clips(folder, "good.mp4")
    os.mkfifo(folder / "stream.fifo")
    (folder / "hangs.mp4").write_text("ffconcat version 1.0\nfile stream.fifo\n")  # blocks in open(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "imd_core", "-v", "data", "check", str(tmp_path / "data"), "--timeout", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        time.sleep(1.0)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "spawn_main" not in _children(proc.pid):
            time.sleep(0.2)  # the decoding workers are up: set-up is over, a decode hangs
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C reaches the whole process group
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


def _children(pid: int) -> str:
    """Command lines of a process's children (Linux /proc; empty elsewhere)."""
    out = []
    for task in Path("/proc").glob(f"{pid}/task/*/children"):
        for child in task.read_text().split():
            try:
                out.append(Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    return " ".join(out)
