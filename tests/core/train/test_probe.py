"""The pre-training probe: a file that hangs at open (inside FFmpeg) is left out, counted and
reported, and the run finishes; results are cached per content hash (resume is free)."""

from __future__ import annotations

import json
import os
import time

import av
import pytest

from imd_core.train import probe as P
from imd_core.train.events import read_events
from tests.core.data.test_check_timeout import _hanging_clip
from tests.core.train.conftest import write_recipe
from tests.media_factory import write_broken

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "mkfifo") or "concat" not in av.formats_available,
        reason="needs named pipes (POSIX) and FFmpeg's concat demuxer",
    ),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture()
def data(tmp_path, tiny_data):
    root = tmp_path / "clips"
    for clip in tiny_data.glob("*/*.mp4"):
        (root / clip.parent.name).mkdir(parents=True, exist_ok=True)
        (root / clip.parent.name / clip.name).symlink_to(clip)
    _hanging_clip(root / "clapping")  # clapping/hangs.mp4 -> ffconcat list naming a FIFO
    write_broken(root / "waving" / "zz_truncated.mp4", "truncated")
    return root


@pytest.mark.timeout(120)
def test_a_hanging_file_is_excluded_counted_and_the_run_finishes(tmp_path, data, tiny_savld):
    from imd_core.cli.main import main

    recipe = write_recipe(tmp_path / "r.json", tiny_savld, epochs=1, max_steps_per_epoch=2)
    t0 = time.monotonic()
    code = main(["train", "--config", str(recipe), "--data", str(data), "--out", str(tmp_path / "run"),
                 "--set", "data.probe_timeout=1"])  # fmt: skip
    elapsed = time.monotonic() - t0
    assert code == 0
    events = read_events(tmp_path / "run" / "events.jsonl")
    started = next(e for e in events if e["event"] == "run_started")
    excluded = {os.path.basename(x["path"]): x["reason"] for x in started["excluded"]}
    assert set(excluded) == {"hangs.mp4", "zz_truncated.mp4"}
    assert excluded["hangs.mp4"].startswith("decode timed out after 1 s")
    assert "\n" not in excluded["zz_truncated.mp4"]
    assert started["train_clips"] + started["val_clips"] == 18  # the 18 good clips, nothing else
    assert events[-1]["event"] == "run_finished"
    assert elapsed < 60, elapsed
    # the verdicts are cached by content hash: probing again starts no process at all
    cached = json.loads((tmp_path / "run" / "probe_cache.json").read_text())["results"]
    assert len(cached) == 20 and sum(v is not None for v in cached.values()) == 2


def test_cached_verdicts_need_no_worker(tmp_path, data, monkeypatch):
    paths = sorted(str(p) for p in data.glob("*/*.mp4"))
    cache = tmp_path / "probe_cache.json"
    first = P.probe_paths(paths, timeout=1.0, cache_file=cache)
    assert sum(v is not None for v in first.values()) == 2

    def no_workers(*_a, **_k):
        raise AssertionError("a cached verdict started a probe")

    monkeypatch.setattr("imd_core.media.sandbox.run_bounded", no_workers)
    assert P.probe_paths(paths, timeout=1.0, cache_file=cache) == first


def test_probe_file_in_process_on_good_and_bad_files(tmp_path, tiny_data):
    good = next(tiny_data.glob("clapping/*.mp4"))
    assert P.probe_file(str(good), 5.0) is None
    write_broken(tmp_path / "t.mp4", "not-media")
    reason = P.probe_file(str(tmp_path / "t.mp4"), 5.0)
    assert reason and not reason.startswith(str(tmp_path))
    assert P.probe_file(str(tmp_path / "missing.mp4"), 5.0) == "file not found"
