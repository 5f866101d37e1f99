"""One verdict per file (issue 15 item 4): a still image and a truncated file are rejected
with the same reason by decode_clip (predict, batch, training), data check and the
training probe; damaged packets are a warning, never a failure."""

from __future__ import annotations

import pytest

from imd_core.data.check import check_entry
from imd_core.data.manifest import ClipEntry
from imd_core.errors import DecodeError
from imd_core.media.decode import decode_clip
from imd_core.train.probe import probe_file
from tests.media_factory import write_broken, write_damaged, write_still_image


def _decode_reason(path) -> str:
    with pytest.raises(DecodeError) as info:
        decode_clip(path, num_frames=8, size=32)
    return str(info.value).removeprefix(f"{path}: ")


def _check(path):
    return check_entry(ClipEntry(path=str(path), label="a", label_index=0, split="train"))


def test_a_png_named_mp4_is_a_still_image_everywhere(tmp_path):
    path = write_still_image(tmp_path / "photo.mp4")
    reason = _decode_reason(path)
    assert reason.startswith("a still image (png picture), not a video")
    result = _check(path)
    assert result.status == "error" and result.reason == reason
    assert probe_file(str(path), timeout=10) == reason


def test_a_truncated_file_has_one_reason_everywhere(tmp_path):
    path = write_broken(tmp_path / "cut.mp4", "truncated-stream")
    reason = _decode_reason(path)
    assert "truncated" in reason and reason.startswith("video data ends at ")
    result = _check(path)
    assert result.status == "error" and result.reason == reason


def test_damaged_packets_are_a_warning_everywhere(tmp_path):
    path = write_damaged(tmp_path / "dmg.mp4")
    clip = decode_clip(path, num_frames=8, size=32)
    assert clip.damaged_packets > 0 and len(clip.frames) == 8
    result = _check(path)
    assert result.status == "ok" and result.reason.startswith(
        f"{clip.damaged_packets} damaged packets skipped"
    )
