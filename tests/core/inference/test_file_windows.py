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


def test_whole_clip_audio_kept_is_bounded_and_gives_the_same_model_input(tmp_path, monkeypatch):
    """A whole clip keeps only its centred WHOLE_CLIP_AUDIO_SECONDS (issue 17 item 3): the
    audio buffer does not grow with the clip, and the model's centred window is unchanged."""
    import imd_core.inference.file_windows as fwmod
    from imd_core.data.transforms import ClipPreprocessor
    from imd_core.media.decode import decode_clip
    from tests.media_factory import write_clip

    monkeypatch.setattr(fwmod, "WHOLE_CLIP_AUDIO_SECONDS", 4.0)  # stands for 60 s with short clips
    pre = ClipPreprocessor(audio_seconds=2.56)
    kept = []
    for seconds in (9.0, 27.3):
        path = write_clip(
            tmp_path / f"c{seconds}.mp4", seconds, fps=5, width=32, height=24, audio_pattern="chirp"
        )
        (item,) = list(open_file_windows(path, window=None, hop=None, num_frames=4, frame_size=24))
        kept.append(len(item.audio))
        whole = decode_clip(path, num_frames=4, size=24)  # everything, as before the bound
        assert len(whole.audio) > 2 * len(item.audio)
        assert np.array_equal(item.frames, whole.frames)
        assert np.array_equal(pre.audio_window(item.audio), pre.audio_window(whole.audio))
    assert max(kept) <= 4.0 * 16000 + 1 and abs(kept[0] - kept[1]) <= 1  # flat, not per second


def test_far_apart_frames_are_reached_by_seeking_not_by_holding_the_packets(tmp_path, monkeypatch):
    import imd_core.media.decode as dec
    from tests.media_factory import write_clip

    path = write_clip(tmp_path / "long.mp4", 24.0, fps=10, width=32, height=24, gop=10, audio_hz=None)
    full = dec.decode_clip(path, num_frames=4, size=24)
    held = []
    collect = dec._collect
    monkeypatch.setattr(dec, "_collect", lambda *a: held.append(len(out := collect(*a))) or out)
    monkeypatch.setattr(dec, "MAX_READ_GAP", 2.0)
    grouped = dec.decode_clip(path, num_frames=4, size=24)
    assert np.array_equal(grouped.frames, full.frames) and np.array_equal(
        grouped.frame_times, full.frame_times
    )
    assert len(held) == 4 and max(held) < 60  # one group per frame, about a GOP each (240 packets in all)
