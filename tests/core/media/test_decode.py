"""decode_clip / probe on real media written by PyAV (tests/media_factory.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from imd_core.errors import ConfigError, DecodeError
from imd_core.media.decode import decode_clip, probe, sample_times
from tests.media_factory import BROKEN_KINDS, chirp, frame_index_of, write_broken, write_clip

FPS = 25


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {
        "mp4": write_clip(d / "h264 aac.mp4", 2.0, fps=FPS),
        "mov": write_clip(d / "clip.mov", 2.0, fps=FPS),
        "mkv": write_clip(d / "vp9_opus.mkv", 2.0, fps=FPS),
        "webm": write_clip(d / "vp8_opus.webm", 2.0, fps=FPS),
        "webm-vorbis": write_clip(
            d / "vp9_vorbis.webm", 2.0, fps=FPS, video_codec="libvpx-vp9", audio_codec="vorbis"
        ),
        "avi": write_clip(d / "mjpeg_pcm.avi", 2.0, fps=FPS),
    }


def _expected_indices(times, fps=FPS):
    return [int(np.floor(t * fps + 1e-9)) for t in times]


@pytest.mark.parametrize("kind", ["mp4", "mov", "mkv", "webm", "webm-vorbis", "avi"])
def test_containers_decode_the_right_frames_and_audio(media, kind):
    clip = decode_clip(media[kind], num_frames=4)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (4, 48, 64, 3)
    want = sample_times(0.0, clip.end, num_frames=4)
    assert [frame_index_of(f) for f in clip.frames] == _expected_indices(want)
    np.testing.assert_allclose(clip.frame_times, np.floor(want * FPS) / FPS, atol=1e-3)
    assert clip.audio is not None and clip.audio.dtype == np.float32
    assert clip.audio.shape == (round((clip.end - clip.start) * 16000),)
    a, b = clip.audio_extent
    assert a < 0.05 and b > 1.95  # Opus/Vorbis pre-skip may eat a few ms at the start
    assert 0.45 < np.abs(clip.audio[8000:24000]).max() < 0.55


def test_seek_range_picks_the_same_frames_as_a_full_decode(tmp_path):
    path = write_clip(tmp_path / "long.mp4", 6.0, fps=10, gop=10)
    times = [3.05, 3.95, 3.0, 3.45, 3.45]  # any order, repeats allowed
    clip = decode_clip(path, 3.0, 4.0, times=times)
    assert [frame_index_of(f) for f in clip.frames] == [30, 39, 30, 34, 34]
    full = decode_clip(path)  # every frame, no seek
    assert len(full.frames) == 60
    assert [frame_index_of(f) for f in full.frames] == list(range(60))


def test_all_frames_in_a_range_and_fps_grid(media):
    clip = decode_clip(media["mp4"], 0.5, 1.0)
    assert [frame_index_of(f) for f in clip.frames] == list(range(13, 25))  # times in [0.5, 1.0)
    grid = decode_clip(media["mp4"], 0.0, 1.0, fps=5)
    assert [frame_index_of(f) for f in grid.frames] == [0, 5, 10, 15, 20]


def test_no_audio_stream_is_absent_not_an_error(tmp_path):
    clip = decode_clip(write_clip(tmp_path / "silent.mp4", 1.0, audio_hz=None), num_frames=2)
    assert clip.audio is None and clip.audio_extent is None and not clip.has_audio
    assert not probe(clip.info.path).has_audio


def test_audio_shorter_than_video_is_padded_and_extent_reported(tmp_path):
    path = write_clip(tmp_path / "short.mp4", 2.0, audio_seconds=0.8, sample_rate=22050, channels=1)
    clip = decode_clip(path, num_frames=2)
    assert clip.audio.shape == (32000,)
    a, b = clip.audio_extent
    assert a == 0.0 and 0.75 < b < 0.9
    assert np.abs(clip.audio[int(b * 16000) + 160 :]).max() == 0.0
    assert np.abs(clip.audio[: int(0.7 * 16000)]).max() > 0.4


@pytest.mark.parametrize(
    ("name", "kw", "amp"),
    [
        ("mono8k.mp4", {"sample_rate": 8000, "channels": 1}, 0.5),
        (
            "six.mkv",
            {"sample_rate": 22050, "channels": 6, "audio_codec": "aac"},
            0.5 * 5 / 6,
        ),  # AAC LFE is low-passed
        ("pcm11k.avi", {"sample_rate": 11025, "channels": 2}, 0.5),
        ("opus48k.webm", {"channels": 1}, 0.5),
    ],
)
def test_any_sample_rate_and_channel_count_becomes_16k_mono(tmp_path, name, kw, amp):
    clip = decode_clip(write_clip(tmp_path / name, 1.0, **kw), num_frames=1)
    assert clip.sample_rate == 16000 and clip.audio.ndim == 1
    assert abs(np.abs(clip.audio[3000:13000]).max() - amp) < 0.05
    spectrum = np.abs(np.fft.rfft(clip.audio[3000:13000]))
    assert abs(np.argmax(spectrum) * 16000 / 10000 - 440) < 5


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".avi"])
def test_audio_is_aligned_with_its_timestamps_after_a_seek(tmp_path, ext):
    path = write_clip(tmp_path / f"chirp{ext}", 3.0, audio_pattern="chirp", gop=5)
    start, end = 1.3, 2.6
    clip = decode_clip(path, start, end, num_frames=1)
    t = start + np.arange(len(clip.audio)) / 16000
    inner = slice(800, -800)
    lags = np.arange(-48, 49)  # +-3 ms
    scores = [np.dot(clip.audio[inner], chirp(t - lag / 16000)[inner]) for lag in lags]
    assert abs(lags[int(np.argmax(scores))]) <= 16  # within 1 ms (Opus pre-skip rounding)


def test_odd_frame_sizes(tmp_path):
    for name, kw in [("odd.mp4", {"pix_fmt": "yuv444p"}), ("odd.avi", {})]:
        clip = decode_clip(write_clip(tmp_path / name, 0.4, width=63, height=47, **kw), num_frames=2)
        assert clip.frames.shape == (2, 47, 63, 3)


def test_resize_short_side_or_exact(media):
    assert decode_clip(media["mp4"], num_frames=1, size=24).frames.shape == (1, 24, 32, 3)
    assert decode_clip(media["mp4"], num_frames=1, size=(20, 30)).frames.shape == (1, 20, 30, 3)


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    path = write_clip(tmp_path / f"rot{rotation}.mp4", 0.4, width=64, height=48, rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    clip = decode_clip(path, num_frames=1)
    frame = clip.frames[0]
    assert frame.shape == ((64, 48, 3) if rotation % 180 else (48, 64, 3))
    assert (info.height, info.width) == frame.shape[:2]
    # The white marker (top-left of the coded frame) moves with a counter-clockwise turn.
    h, w = frame.shape[:2]
    corners = {
        "tl": frame[: h // 8, : w // 8],
        "bl": frame[-h // 8 :, : w // 8],
        "br": frame[-h // 8 :, -w // 8 :],
        "tr": frame[: h // 8, -w // 8 :],
    }
    white = {k for k, v in corners.items() if v.mean() > 240}
    assert white == {{90: "bl", 180: "br", -90: "tr"}[rotation]}


def test_variable_frame_rate(tmp_path):
    times = [0.0, 0.05, 0.3, 0.31, 0.9, 1.5, 1.52, 1.9]
    path = write_clip(tmp_path / "vfr.mp4", 2.0, frame_times=times)
    clip = decode_clip(path, times=[0.0, 0.2, 0.305, 0.31, 1.0, 1.51, 1.99])
    assert [frame_index_of(f) for f in clip.frames] == [0, 1, 2, 3, 4, 5, 7]
    np.testing.assert_allclose(clip.frame_times, [0.0, 0.05, 0.3, 0.31, 0.9, 1.5, 1.9], atol=1e-3)


def test_non_ascii_and_space_paths(tmp_path):
    folder = tmp_path / "vidéos à voir"
    folder.mkdir()
    path = write_clip(folder / "clip ünï 日本.mkv", 0.5, video_codec="libvpx")
    clip = decode_clip(path, num_frames=2)
    assert clip.frames.shape[0] == 2 and clip.has_audio
    assert probe(path).path == str(path)


def test_long_file_seeks_to_a_late_window(tmp_path):
    path = write_clip(
        tmp_path / "long.mp4", 150.0, fps=1, width=32, height=32, gop=10, sample_rate=8000, channels=1
    )
    clip = decode_clip(path, 120.0, 124.0, num_frames=2, timeout=20)
    assert [frame_index_of(f) % 256 for f in clip.frames] == [121, 123]
    assert clip.has_audio and clip.audio.shape == (64000,)


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_unreadable_inputs_raise_a_one_line_decode_error(tmp_path, kind):
    path = write_broken(tmp_path / f"bad {kind}.mp4", kind)
    with pytest.raises(DecodeError) as err:
        if kind == "truncated-stream":
            decode_clip(path, num_frames=4)  # opens, but the data stops early
        else:
            decode_clip(path, num_frames=2)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg
    if kind != "truncated-stream":
        with pytest.raises(DecodeError):
            probe(path)


def test_truncated_stream_still_decodes_its_intact_start(tmp_path):
    path = write_broken(tmp_path / "cut.mkv", "truncated-stream")
    clip = decode_clip(path, 0.0, 0.5, num_frames=2)
    assert clip.frames.shape[0] == 2


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(DecodeError, match="not a regular file"):
        decode_clip(fifo)


def test_watchdog_bounds_a_decode(media):
    with pytest.raises(DecodeError, match="longer than"):
        decode_clip(media["mp4"], timeout=1e-6)


def test_argument_errors(media):
    with pytest.raises(ConfigError):
        decode_clip(media["mp4"], num_frames=2, fps=5)
    with pytest.raises(DecodeError, match="after the end"):
        decode_clip(media["mp4"], 5.0, 6.0)
    clip = decode_clip(media["mp4"], 1.5, 99.0, num_frames=1)  # end is clamped
    assert clip.end == pytest.approx(2.0)


def test_probe_reports_streams(media):
    info = probe(media["avi"])
    assert info.has_video and info.has_audio and info.video_codec == "mjpeg"
    assert (info.width, info.height) == (64, 48) and info.fps == pytest.approx(25)
    assert info.duration == pytest.approx(2.0, abs=0.05) and info.channels == 2


def test_audio_only_requests_and_files(tmp_path, media):
    clip = decode_clip(media["mp4"], 0.5, 1.5, video=False)
    assert clip.frames.shape[0] == 0 and clip.audio.shape == (16000,) and clip.has_audio
    sound = write_clip(tmp_path / "sound.m4a", 1.0, video=False)
    assert not probe(sound).has_video
    with pytest.raises(DecodeError, match="no video stream"):
        decode_clip(sound, num_frames=2)
