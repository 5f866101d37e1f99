"""A decode that hangs mid-stream (after a good open, so the probe passes it) is stopped by
the loading process's sandbox within ``data.loader_timeout``: the clip is skipped like any
unusable file, the run goes on, the probe cache marks the file excluded, later epochs and
``--resume`` leave it out, and ``imd eval`` lists it with the unusable files.

The hanging input is real: an ``ffconcat`` list whose first entry is a good clip and whose
second is a FIFO nobody writes, so FFmpeg's concat demuxer blocks in ``open(2)`` once the
decode reaches the second entry (0.8 s into the 1.6 s "clip").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from imd_core.data.dataset import content_hash
from imd_core.errors import ConfigError
from imd_core.train import probe as P
from imd_core.train.config import load_train_config
from imd_core.train.events import read_events
from tests.core.train.conftest import CLASSES, ENV, ROOT, imd, write_recipe

needs_fifo = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or "concat" not in av.formats_available,
    reason="needs named pipes (POSIX) and FFmpeg's concat demuxer",
)


def mid_stream_hanger(folder: Path, first: str, name: str = "zz_hangs_mid.mp4") -> Path:
    """An ffconcat list: ``first`` (a good 0.8 s clip in ``folder``), then a FIFO nobody writes."""
    os.mkfifo(folder / "stream.fifo")  # not a media extension: not a dataset entry itself
    path = folder / name
    path.write_text(f"ffconcat version 1.0\nfile {first}\nduration 0.8\nfile stream.fifo\nduration 0.8\n")
    return path


def split_tree(root: Path, tiny_data: Path, hang_in: str) -> Path:
    """``root/{train,val}/<class>/`` links to the tiny clips (12 train, 6 val) plus a
    mid-stream hanger in ``hang_in``/clapping (the train split then holds 12 with it)."""
    for c in CLASSES:
        clips = sorted((tiny_data / c).glob("*.mp4"))
        keep_train = 3 if (hang_in == "train" and c == "clapping") else 4
        for split, chosen in (("train", clips[:keep_train]), ("val", clips[4:6])):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for clip in chosen:
                (root / split / c / clip.name).symlink_to(clip)
    folder = root / hang_in / "clapping"
    mid_stream_hanger(folder, sorted(folder.glob("*.mp4"))[0].name)
    return root


@needs_fifo
def test_the_hanger_passes_the_probe_and_hangs_mid_stream(tmp_path, tiny_data):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.mp4").symlink_to(next(tiny_data.glob("clapping/*.mp4")))
    hanger = mid_stream_hanger(tmp_path / "c", "a.mp4")
    assert P.probe_file(str(hanger), 5.0) is None  # opens well: the probe cannot see it
    code = (
        "import sys; from imd_core.media.decode import decode_clip; print('decoding', flush=True); "
        f"decode_clip({str(hanger)!r}, 0.0, None, num_frames=4, size=32, timeout=0.5)"
    )
    with pytest.raises(subprocess.TimeoutExpired) as info:  # nothing in-process can end it
        subprocess.run([sys.executable, "-c", code], env=ENV, cwd=ROOT, timeout=6, capture_output=True)
    assert b"decoding" in (info.value.stdout or b"")  # it got there and stayed


@needs_fifo
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("workers", "hang_in"), [(0, "train"), (1, "train"), (0, "val"), (1, "val")])
def test_a_mid_stream_hang_is_skipped_excluded_and_left_out_by_resume(
    tmp_path, tiny_data, tiny_savld, workers, hang_in
):
    data = split_tree(tmp_path / "data", tiny_data, hang_in)
    recipe = write_recipe(
        tmp_path / "r.json", tiny_savld, epochs=2, num_workers=workers, data={"loader_timeout": 4.0}
    )
    run = tmp_path / "run"
    hanger = str(data / hang_in / "clapping" / "zz_hangs_mid.mp4")
    first = imd("train", "--config", str(recipe), "--data", str(data), "--out", str(run), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    events = read_events(run / "events.jsonl")
    assert events[-1]["event"] == "run_finished" and events[-1]["outcome"] == "completed"
    started = next(e for e in events if e["event"] == "run_started")
    assert started["excluded"] == []  # the probe passed it
    clips_before = started["train_clips"] + started["val_clips"]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 2
    if hang_in == "train":  # replaced in its batch by the next clip; counted across epochs
        assert [e["train"]["skipped"] for e in epochs] == [1, 1]
    else:  # dropped from its batch in both validations (the second one without decoding it)
        assert [e["val"]["skipped"] for e in epochs] == [1, 1]
        assert [e["val"]["clips"] for e in epochs] == [started["val_clips"] - 1] * 2
    cache = json.loads((run / "probe_cache.json").read_text())["results"]
    assert cache[content_hash(hanger)].startswith("decode timed out after 4 s")
    # stopped once: the second epoch's loaders got it as a known bad clip, not to decode again
    assert first.stderr.count(f"excluded from now on: {hanger}: decode timed out after 4 s") == 1

    second = imd("train", "--out", str(run), "--resume", "--set", "epochs=3", timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    events = read_events(run / "events.jsonl")
    started = [e for e in events if e["event"] == "run_started"][-1]
    assert started["resumed"] is True and started["start_epoch"] == 2
    assert [(x["path"], x["reason"][:26]) for x in started["excluded"]] == [
        (hanger, "decode timed out after 4 s")
    ]
    assert started["train_clips"] + started["val_clips"] == clips_before - 1 == 17 + (hang_in == "val")
    assert events[-1]["event"] == "run_finished" and events[-1]["outcome"] == "completed"
    assert "excluded from now on" not in second.stderr


@needs_fifo
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", ["0", "1"])
def test_imd_eval_is_bounded_and_lists_the_hung_file(tmp_path, tiny_data, tiny_savld, workers):
    """``imd eval --decode-timeout 3`` (the real CLI) evaluates the other clips and exits 3
    listing the file, as for any unusable file."""
    from tests.core.train.conftest import tiny_model_section

    data = split_tree(tmp_path / "data", tiny_data, "val")
    from imd_core.model.checkpoint import save_model
    from imd_core.model.config import ModelConfig
    from imd_core.model.imd_model import IMDModel
    from imd_core.model.savld import Savld

    model = tmp_path / "model"  # a fresh tiny model (random weights: eval only needs to load it)
    save_model(
        IMDModel(ModelConfig.from_dict({**tiny_model_section(), "labels": list(CLASSES)})),
        model,
        savld=Savld.load(tiny_savld),
    )
    t0 = time.monotonic()
    args = ["--split", "val", "--batch-size", "2", "--workers", workers, "--device", "cpu", "--json"]
    proc = imd(
        "eval", "--model", str(model), "--data", str(data), *args, "--decode-timeout", "3", timeout=200
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr[-3000:]
    hanger = str(data / "val" / "clapping" / "zz_hangs_mid.mp4")
    listed = [line for line in proc.stderr.splitlines() if line.startswith(f"{hanger}: ")]  # as the CLI lists
    assert listed and listed[0].startswith(f"{hanger}: decode timed out after 3 s ("), proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["clips"] == 6 and result["skipped"] == 1  # the 6 good validation clips
    ((path, why),) = result["skipped_files"]
    assert path == hanger and why.startswith(f"{hanger}: decode timed out after 3 s (")
    assert elapsed < 120, elapsed


@needs_fifo
@pytest.mark.timeout(150)
def test_a_worker_ended_while_its_sandbox_hangs_leaves_no_process_behind(tmp_path, tiny_data):
    """A DataLoader torn down while its worker waits on a hung decode terminates the worker
    (SIGTERM, after 5 s); the worker's sandbox, stuck in ``open(2)``, must end with it, else it
    would keep the pipes open and ``subprocess.run`` (or the app) would wait for it forever."""
    (tmp_path / "c").mkdir()
    good = next(tiny_data.glob("clapping/*.mp4"))
    (tmp_path / "c" / "a.mp4").symlink_to(good)
    hanger = mid_stream_hanger(tmp_path / "c", "a.mp4")
    script = tmp_path / "teardown.py"
    script.write_text(f"""
import torch
from imd_core.data.dataset import ClipDataset
from imd_core.data.manifest import ClipEntry, DatasetIndex
from imd_core.data.transforms import ClipPreprocessor

if __name__ == "__main__":
    entries = tuple(ClipEntry(p, "c", 0) for p in ({str(good)!r}, {str(hanger)!r}, {str(good)!r}))
    ds = ClipDataset(DatasetIndex("x", ("c",), entries, "csv"), ClipPreprocessor(num_frames=4, image_size=32),
                     train=False, timeout=120)
    it = iter(torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1, collate_fn=lambda b: b))
    print("first", next(it)[0]["index"], flush=True)  # the worker goes on to the hanger
    del it
    print("torn down", flush=True)
""")
    # returns well before the sandbox's 120 s deadline, once no process holds the pipes
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=100
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["first", "0", "torn", "down"]


@needs_fifo
@pytest.mark.timeout(120)
def test_a_dataset_skips_a_hung_file_in_process_and_does_not_wait_for_it_twice(tmp_path, tiny_data):
    from imd_core.data.dataset import ClipDataset, collate_clips
    from imd_core.data.manifest import load_dataset_index
    from imd_core.data.transforms import ClipPreprocessor

    root = tmp_path / "d"
    for clip in sorted(tiny_data.glob("*/*.mp4"))[:3]:
        (root / clip.parent.name).mkdir(parents=True, exist_ok=True)
        (root / clip.parent.name / clip.name).symlink_to(clip)
    folder = next(p for p in root.iterdir() if p.is_dir())
    hanger = str(mid_stream_hanger(folder, sorted(folder.glob("*.mp4"))[0].name))
    index = load_dataset_index(root)
    h = next(i for i, e in enumerate(index.entries) if e.path == hanger)
    pre = ClipPreprocessor(num_frames=4, image_size=32, audio_seconds=0.64)
    for train in (False, True):
        ds = ClipDataset(index, pre, train=train, timeout=1.5)
        t0 = time.monotonic()
        batch = collate_clips([ds[h]])
        assert time.monotonic() - t0 < 30
        assert batch["skipped"] == [h] and batch["skipped_reasons"][0].startswith(
            f"{hanger}: decode timed out after 1.5 s ("
        )
        assert batch["stopped"] == [(h, batch["skipped_reasons"][0])]
        assert batch["batch_size"] == (1 if train else 0)  # replaced in training, dropped in evaluation
        t0 = time.monotonic()
        again = collate_clips([ds[h]])
        assert time.monotonic() - t0 < 1.5 and again["stopped"] == []  # known bad: not decoded again
        assert again["skipped"] == [h]


# ------------------------------------------------------------------ units (fast)


def test_loader_timeout_is_a_validated_config_key():
    assert load_train_config("tiny").data.loader_timeout == 300.0
    assert load_train_config("tiny", ["data.loader_timeout=12.5"]).data.loader_timeout == 12.5
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(ConfigError, match="loader_timeout"):
            load_train_config("tiny", [f"data.loader_timeout={bad}"])


def test_mark_excluded_feeds_the_probe_cache_even_without_probing(tmp_path, tiny_data):
    clip = str(next(tiny_data.glob("drumming/*.mp4")))
    cache = tmp_path / "probe_cache.json"
    assert P.mark_excluded(cache, clip, "decode timed out after 4 s")
    assert P.probe_paths([clip], timeout=0, cache_file=cache) == {clip: "decode timed out after 4 s"}
    assert not P.mark_excluded(cache, str(tmp_path / "missing.mp4"), "x")


def test_with_the_probe_off_recorded_hangs_are_still_left_out(tmp_path, tiny_data):
    from imd_core.data.manifest import load_dataset_index
    from imd_core.train.setup import probe_splits

    index = load_dataset_index(tiny_data)
    hung = index.entries[3].path
    cfg = load_train_config("tiny", ["data.probe_timeout=0"])
    run = tmp_path / "run"
    assert probe_splits(cfg, [index], run) == ([index], [])  # no cache: nothing read, nothing probed
    P.mark_excluded(run / "probe_cache.json", hung, "decode timed out after 5 s")
    (kept,), excluded = probe_splits(cfg, [index], run)
    assert [(x.path, x.reason) for x in excluded] == [(hung, "decode timed out after 5 s")]
    assert len(kept) == len(index) - 1 and hung not in {e.path for e in kept.entries}
