import numpy as np
import pytest

from imd_core.errors import DecodeError
from imd_core.inference.file_windows import open_file_windows


def test_windows_share_one_decode_and_carry_frames_and_audio(media_dir):
    fw = open_file_windows(media_dir / "a.mp4", window=1.0, hop=0.5, num_frames=4, frame_size=32)
    assert fw.duration == pytest.approx(3.0, abs=0.05)
    items = list(fw)
    assert [(i.start, i.end) for i in items] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0)]
    for it in items:
        assert it.frames.shape == (4, 32, 43, 3) and it.frames.dtype == np.uint8
        assert it.audio is not None and it.audio.shape == (16000,) and np.abs(it.audio).max() > 0.1

    # the square moves left to right: later windows see it further right
    def x_of(frame):
        return np.argmax(frame[..., 0].max(axis=0))

    assert x_of(items[0].frames[0]) < x_of(items[-1].frames[-1])


def test_whole_clip_without_audio_track(media_dir):
    fw = open_file_windows(media_dir / "sub" / "b.mp4", window=None, hop=None, num_frames=8, frame_size=32)
    (item,) = list(fw)
    assert item.audio is None and item.frames.shape[0] == 8
    assert (item.start, item.end) == (0.0, pytest.approx(2.0, abs=0.05)) and fw.duration == item.end


def test_broken_file_is_a_decode_error(media_dir):
    with pytest.raises(DecodeError):
        list(open_file_windows(media_dir / "broken.mp4", window=None, hop=None, num_frames=8, frame_size=32))
    with pytest.raises(DecodeError):
        open_file_windows(media_dir / "broken.mp4", window=1.0, hop=None, num_frames=8, frame_size=32)
