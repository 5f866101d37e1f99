import pytest

from imd_core.errors import ConfigError
from imd_core.inference.inputs import expand_inputs, plan_windows, shard


def test_plan_windows_whole_clip_and_hops():
    assert plan_windows(7.5) == [(0.0, 7.5)]
    assert plan_windows(10.0, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 10.0)]
    assert plan_windows(5.0, 2.0, 1.5) == [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]
    assert plan_windows(3.0, 2.0) == [(0.0, 2.0), (1.0, 3.0)]  # the tail gets a window ending at the end
    assert plan_windows(1.0, 4.0) == [(0.0, 1.0)]  # shorter than a window: one window
    with pytest.raises(ConfigError):
        plan_windows(5.0, 0.0)
    with pytest.raises(ConfigError):
        plan_windows(5.0, None, 1.0)


def test_expand_inputs_walks_folders_sorted_and_reports_missing(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.mp4", "d/sub/a.MKV", "d/notes.txt", "d/.hidden.mp4", "clip.bin"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, errors = expand_inputs(
        [
            tmp_path / "clip.bin",
            tmp_path / "d",
            tmp_path / "d" / "b.mp4",
            tmp_path / "nope.mp4",
            tmp_path / "empty",
        ]
    )
    rel = [str(f.relative_to(tmp_path)) for f in files]
    assert rel == ["clip.bin", "d/b.mp4", "d/sub/a.MKV"]  # explicit file kept, duplicate once
    assert [(e.path.endswith("nope.mp4"), e.reason) for e in errors][0] == (True, "no such file or folder")
    assert "no media files" in errors[1].reason


def test_shard_round_robin_covers_everything_once():
    items = list(range(7))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == items
    assert parts[0] == [0, 3, 6]


def test_an_empty_path_is_an_error_not_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "a.mp4").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    files, errors = expand_inputs([""])
    assert files == [] and [(e.path, e.reason.split(";")[0]) for e in errors] == [("", "empty path")]
