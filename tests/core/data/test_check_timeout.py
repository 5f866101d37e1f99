"""`imd data check` bounds a decode that hangs inside FFmpeg (a real hang, not a slow file).

The hanging input is an ``ffconcat`` list (a regular, non-empty file, so it passes every
path check) that names a FIFO nobody writes to: FFmpeg's concat demuxer opens the FIFO
inside ``avformat_open_input`` and blocks in ``open(2)``, where neither the in-process
watchdog nor FFmpeg's interrupt callback can stop it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import av
import pytest

from imd_core.data.check import check_dataset
from tests.media_factory import write_clip

pytestmark = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or "concat" not in av.formats_available,
    reason="needs named pipes (POSIX) and FFmpeg's concat demuxer",
)


def _hanging_clip(folder):
    os.mkfifo(folder / "stream.fifo")  # not a media extension: not a dataset entry itself
    path = folder / "hangs.mp4"
    path.write_text("ffconcat version 1.0\nfile stream.fifo\n")
    return path


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "x").mkdir()
    write_clip(tmp_path / "x" / "good.mp4", 0.5)
    _hanging_clip(tmp_path / "x")
    return tmp_path


def test_the_input_really_hangs_without_the_process_bound(tree):
    # In a throwaway process: the in-process watchdog (0.5 s) does not end it within 5 s.
    code = (
        "from imd_core.media.scan import scan_media; "
        f"scan_media({str(tree / 'x' / 'hangs.mp4')!r}, timeout=0.5)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
def test_check_reports_a_hanging_file_as_timed_out_and_goes_on(tree, workers):
    t0 = time.monotonic()
    report = check_dataset(tree, timeout=1.0, workers=workers)
    elapsed = time.monotonic() - t0
    by_name = {os.path.basename(f.path): f for f in report.files}
    assert set(by_name) == {"good.mp4", "hangs.mp4"}
    assert by_name["good.mp4"].status == "ok"
    hang = by_name["hangs.mp4"]
    assert hang.status == "error" and hang.reason.startswith("decode timed out after 1 s")
    assert "\n" not in hang.reason
    assert not report.usable
    # 1 s limit + 2 s grace + starting worker processes (~0.5 s each, more on a busy machine)
    assert elapsed < 30, elapsed


@pytest.mark.timeout(120)
def test_cli_exit_code_and_one_line_error(tree):
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "imd_core", "data", "check", str(tree), "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert time.monotonic() - t0 < 60
    assert out.returncode == 3, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if "hangs.mp4" in ln]
    assert lines == [f"{tree / 'x' / 'hangs.mp4'}: " + lines[0].split(": ", 1)[1]]
    assert "decode timed out after 1 s" in lines[0]
    assert "good.mp4" in out.stdout and "1 unusable" in out.stdout
