"""Live sources: webcam (through OpenCV; a file stands in for a camera), microphone, playback."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from imd_core.errors import DecodeError, DeviceError
from imd_core.media.live import AudioBlock, FilePlayback, MicrophoneSource, VideoFrame, WebcamSource
from tests.media_factory import frame_index_of, write_broken, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("live") / "clip.mp4", 1.0, fps=25)


def _has_input_device() -> bool:
    try:
        import sounddevice as sd

        sd.check_input_settings()
        return True
    except Exception:
        return False


def _has_camera() -> bool:
    import glob

    return bool(glob.glob("/dev/video*"))


def test_file_playback_merges_frames_and_audio_in_time_order(clip):
    items = list(FilePlayback(clip, realtime=False, block_seconds=0.1))
    frames = [i for i in items if isinstance(i, VideoFrame)]
    blocks = [i for i in items if isinstance(i, AudioBlock)]
    assert [frame_index_of(f.frame) for f in frames] == list(range(25))
    assert all(b.sample_rate == 16000 and b.samples.dtype == np.float32 for b in blocks)
    assert abs(sum(len(b.samples) for b in blocks) - 16000) < 800
    media = [i.media_time for i in items]
    assert media == sorted(media)
    times = [i.time for i in items]
    assert times == sorted(times)  # one monotonic clock for both kinds
    # Timestamps keep the media spacing: a frame at 0.4 s is 0.4 s after the first item.
    f10 = frames[10]
    assert f10.time - items[0].time == pytest.approx(0.4, abs=1e-6)


def test_file_playback_paces_in_real_time_and_seeks(clip):
    t = time.monotonic()
    items = list(FilePlayback(clip, start=0.6, realtime=True))
    elapsed = time.monotonic() - t
    frames = [i for i in items if isinstance(i, VideoFrame)]
    assert frame_index_of(frames[0].frame) == 15
    assert 0.3 < elapsed < 3.0  # ~0.4 s of media, paced on the clock


def test_file_playback_stop_and_bad_input(clip, tmp_path):
    pb = FilePlayback(clip, realtime=False)
    got = []
    for item in pb:
        got.append(item)
        if len(got) == 3:
            pb.stop()
    assert len(got) == 3
    with pytest.raises(DecodeError):
        FilePlayback(write_broken(tmp_path / "x.mp4", "garbage"))


def test_webcam_source_reads_through_opencv(clip):
    with WebcamSource(str(clip)) as cam:  # OpenCV opens a file like a camera
        assert cam.frame_size == (48, 64)
        frames = list(cam)
    assert len(frames) >= 5 and all(f.frame.shape == (48, 64, 3) for f in frames)
    assert [f.index for f in frames] == sorted({f.index for f in frames})  # newest wins, no repeats
    assert all(a.time <= b.time for a, b in zip(frames, frames[1:], strict=False))
    assert frames[0].frame[-1, -1, 0] > 10  # RGB, not BGR: red channel carries the index colour


def test_missing_camera_is_a_device_error():
    with pytest.raises(DeviceError, match="camera"):
        WebcamSource("/dev/video-does-not-exist").start()
    if not _has_camera():
        with pytest.raises(DeviceError):
            WebcamSource(0).start()


@pytest.mark.skipif(not _has_camera(), reason="no camera device (/dev/video*) on this machine")
def test_real_camera_gives_timestamped_frames():
    with WebcamSource(0) as cam:
        f = cam.read(timeout=5)
    assert f is not None and f.frame.ndim == 3 and f.time <= time.monotonic()


def test_microphone_callback_fills_the_ring_buffer_with_timestamps():
    clock = SimpleNamespace(now=100.0)
    seen = []
    mic = MicrophoneSource(
        sample_rate=1000, channels=2, buffer_seconds=1.0, callback=seen.append, clock=lambda: clock.now
    )
    for k in range(15):  # 1.5 s of 100-sample stereo blocks: the 1 s ring wraps
        block = np.full((100, 2), k, np.float32)
        block[:, 1] = k + 2  # mono = mean of the channels = k + 1
        clock.now = 100.0 + (k + 1) * 0.1
        info = SimpleNamespace(currentTime=5.0 + (k + 1) * 0.1, inputBufferAdcTime=5.0 + k * 0.1)
        mic._on_audio(block, 100, info, None)
    assert len(seen) == 15 and seen[0].time == pytest.approx(100.0) and seen[3].samples[0] == 4.0
    last = mic.latest(0.25)
    assert last.samples.shape == (250,) and last.time == pytest.approx(101.25)
    np.testing.assert_array_equal(last.samples[:50], 13.0)  # the last half of block k=12 (mono k + 1)
    np.testing.assert_array_equal(last.samples[50:150], 14.0)
    np.testing.assert_array_equal(last.samples[-100:], 15.0)
    assert mic.latest(5.0).samples.shape == (1000,)  # capped by the ring


def test_missing_microphone_is_a_device_error():
    if _has_input_device():
        pytest.skip("a sound input device exists here; covered by the real-device test")
    with pytest.raises(DeviceError, match="microphone|sound"):
        MicrophoneSource().start()


@pytest.mark.skipif(not _has_input_device(), reason="no sound input device on this machine")
def test_real_microphone_records():
    with MicrophoneSource(block_seconds=0.05) as mic:
        time.sleep(0.5)
        block = mic.latest(0.2)
    assert block is not None and block.samples.dtype == np.float32 and block.time <= time.monotonic()
