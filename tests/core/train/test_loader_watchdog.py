"""A decode that hangs mid-stream (after a good open, so the probe passes it) ends the run
within ``data.loader_timeout``: ``run_failed`` names the file, the probe cache marks it
excluded, nothing half-written is left, and ``--resume`` completes without it.

The hanging input is real: an ``ffconcat`` list whose first entry is a good clip and whose
second is a FIFO nobody writes, so FFmpeg's concat demuxer blocks in ``open(2)`` once the
decode reaches the second entry (0.8 s into the 1.6 s "clip"). The runs are subprocesses:
with ``num_workers=0`` the watchdog thread ends the stuck process with ``os._exit``.
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

from imd_core.data.dataset import DecodeLog, content_hash
from imd_core.errors import ConfigError, DecodeError
from imd_core.train import probe as P
from imd_core.train.config import load_train_config
from imd_core.train.events import read_events
from imd_core.train.watchdog import EXIT_HUNG, LoaderHang, LoaderWatchdog
from tests.core.train.conftest import CLASSES, write_recipe

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
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


def imd(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imd_core", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


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
    with pytest.raises(subprocess.TimeoutExpired) as info:  # the in-process watchdog cannot end it
        subprocess.run([sys.executable, "-c", code], env=ENV, cwd=ROOT, timeout=6, capture_output=True)
    assert b"decoding" in (info.value.stdout or b"")  # it got there and stayed


@needs_fifo
@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize(("workers", "hang_in"), [(0, "train"), (1, "val")])
def test_a_mid_stream_hang_fails_the_run_names_the_file_and_resume_skips_it(
    tmp_path, tiny_data, tiny_savld, workers, hang_in
):
    data = split_tree(tmp_path / "data", tiny_data, hang_in)
    recipe = write_recipe(
        tmp_path / "r.json",
        tiny_savld,
        epochs=1,
        num_workers=workers,
        checkpoint_every_steps=1,
        data={"loader_timeout": 4.0},
    )
    run = tmp_path / "run"
    t0 = time.monotonic()
    first = imd("train", "--config", str(recipe), "--data", str(data), "--out", str(run), timeout=300)
    elapsed = time.monotonic() - t0
    assert first.returncode == EXIT_HUNG, first.stderr[-3000:]
    # start-up + probe + training steps + 4 s (+ the worker's shutdown) on a busy 2-core machine
    assert elapsed < 150, elapsed
    events = read_events(run / "events.jsonl")
    failed = events[-1]
    assert failed["event"] == "run_failed" and failed["error"] == "LoaderHang"
    hanger = str(data / hang_in / "clapping" / "zz_hangs_mid.mp4")
    assert failed["reason"].startswith(f"{hanger}: decode hung for ")
    assert "mid-stream; it is excluded from now on; continue with `imd train --resume`" in failed["reason"]
    assert "\n" not in failed["reason"]
    started = next(e for e in events if e["event"] == "run_started")
    assert started["excluded"] == []  # the probe passed it
    clips_before = started["train_clips"] + started["val_clips"]
    cache = json.loads((run / "probe_cache.json").read_text())["results"]
    assert cache[content_hash(hanger)].startswith("decode hung for ")
    # nothing half-written: no temporary checkpoint folder; last/ (if any) is complete
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    if (run / "last").exists():
        assert (run / "last" / "training_state.pt").is_file() and (
            run / "last" / "model.safetensors"
        ).is_file()
    if hang_in == "val":  # the hang came in validation, after checkpointed training steps
        assert (run / "last" / "training_state.pt").is_file()

    had_last = (run / "last").exists()
    second = imd("train", "--out", str(run), "--resume", timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    events = read_events(run / "events.jsonl")
    started = [e for e in events if e["event"] == "run_started"][-1]
    assert started["resumed"] is had_last  # from last/ if a step was saved before the hang, else anew
    assert [x["path"] for x in started["excluded"]] == [hanger]
    assert started["excluded"][0]["reason"].startswith("decode hung for ")
    assert started["train_clips"] + started["val_clips"] == clips_before - 1 == 17 + (hang_in == "val")
    assert events[-1]["event"] == "run_finished" and events[-1]["outcome"] == "completed"
    assert [e["frame_cache"] for e in events if e["event"] == "epoch"] == [None]  # no data.frame_cache


@needs_fifo
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", ["0", "1"])
def test_imd_eval_is_bounded_and_names_the_hung_file(tmp_path, tiny_data, tiny_savld, workers):
    """``imd eval --decode-timeout 3`` (the real CLI) exits 3 naming the file."""
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
    code = "import sys; from imd_core.cli.main import main; sys.exit(main(sys.argv[1:]))"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "eval",
            "--model",
            str(model),
            "--data",
            str(data),
            "--split",
            "val",
            "--batch-size",
            "2",
            "--workers",
            workers,
            "--device",
            "cpu",
            "--json",
            "--decode-timeout",
            "3",
        ],
        env=ENV,
        cwd=ROOT,
        timeout=200,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr[-3000:]
    hanger = data / "val" / "clapping" / "zz_hangs_mid.mp4"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("imd eval: error:")]
    assert lines and lines[-1].startswith(f"imd eval: error: {hanger}: decode hung for "), proc.stderr[-3000:]
    assert "mid-stream" in lines[-1]
    assert proc.stdout == ""
    assert elapsed < 120, elapsed


@needs_fifo
@pytest.mark.timeout(120)
def test_the_backstop_kills_a_stuck_worker_so_the_parent_is_not_left_waiting(tmp_path, tiny_data):
    """A loader with a worker whose own timeout is off (0): the watchdog thread ends the
    process, and kills the worker stuck in C first, else it would keep the pipes open and
    ``subprocess.run`` (or the app) would wait for it forever."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.mp4").symlink_to(next(tiny_data.glob("clapping/*.mp4")))
    hanger = mid_stream_hanger(tmp_path / "c", "a.mp4")
    script = tmp_path / "stuck.py"
    script.write_text(f"""
import sys, torch
from imd_core.data.dataset import DecodeLog
from imd_core.media.decode import decode_clip
from imd_core.train.watchdog import LoaderWatchdog
log = DecodeLog({str(tmp_path / "decoding")!r})
class Stuck(torch.utils.data.Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, i):
        with log.decoding({str(hanger)!r}):
            decode_clip({str(hanger)!r}, 0.0, None, num_frames=4, size=32, timeout=0.5)
        return i
dog = LoaderWatchdog(1.0, log, message=lambda h: f"HUNG {{h.path}}", on_fatal=lambda m: print(m, file=sys.stderr),
                     grace=1.0, poll=0.1)
with dog:
    for _ in dog.watch(torch.utils.data.DataLoader(Stuck(), num_workers=1, timeout=0)):
        pass
print("not reached")
""")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60
    )
    assert proc.returncode == EXIT_HUNG, proc.stderr[-2000:]
    assert f"HUNG {hanger}" in proc.stderr and "not reached" not in proc.stdout
    assert time.monotonic() - t0 < 40


# ------------------------------------------------------------------ units (fast)


def test_loader_timeout_is_a_validated_config_key():
    assert load_train_config("tiny").data.loader_timeout == 300.0
    assert load_train_config("tiny", ["data.loader_timeout=12.5"]).data.loader_timeout == 12.5
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(ConfigError, match="loader_timeout"):
            load_train_config("tiny", [f"data.loader_timeout={bad}"])


def test_decode_log_records_the_file_being_decoded_and_clears_it(tmp_path):
    log = DecodeLog(tmp_path / "decoding")
    assert log.busy() == []
    with log.decoding("/a.mp4"):
        (rec,) = log.busy({os.getpid()})
        assert rec["path"] == "/a.mp4" and rec["pid"] == os.getpid()
        with log.decoding("/donor.mp4"):
            assert [r["path"] for r in log.busy()] == ["/donor.mp4"]
        assert [r["path"] for r in log.busy()] == ["/a.mp4"]
        assert log.busy({-5}) == []  # another process's records are not this one's
    assert log.busy() == []
    import pickle

    assert pickle.loads(pickle.dumps(log)).folder == log.folder


class _SlowLoader:
    """Yields one batch, then blocks in "decoding" ``path`` (a sleep, as a stuck C call)."""

    num_workers = 0

    def __init__(self, log: DecodeLog, path: str, stall: float) -> None:
        self.log, self.path, self.stall = log, path, stall

    def __iter__(self):
        yield {"frame_cache_hits": 2, "frame_cache_misses": 1}
        with self.log.decoding(self.path):
            time.sleep(self.stall)
        yield {"frame_cache_hits": 0, "frame_cache_misses": 0}


def test_the_watchdog_thread_reports_the_stuck_file_and_exits(tmp_path):
    log = DecodeLog(tmp_path / "decoding")
    exits, fatal, hangs, counted = [], [], [], []
    dog = LoaderWatchdog(
        0.5,
        log,
        message=lambda h: f"{h.path}: hung {h.seconds:.1f}",
        on_hang=hangs.append,
        on_fatal=fatal.append,
        exit_fn=exits.append,
        kill_children=False,
        poll=0.05,
    )
    with dog:
        batches = list(dog.watch(_SlowLoader(log, "/stuck.mp4", 1.5), on_batch=counted.append))
    assert len(batches) == 2 and counted[0]["frame_cache_hits"] == 2
    assert exits == [EXIT_HUNG]  # once, although the stall went on
    assert [h.path for h in hangs] == ["/stuck.mp4"] and 0.5 <= hangs[0].seconds < 1.5
    assert fatal and fatal[0].startswith("/stuck.mp4: hung")


def test_a_healthy_loader_is_not_reported(tmp_path):
    log = DecodeLog(tmp_path / "decoding")
    exits: list[int] = []
    dog = LoaderWatchdog(1.0, log, message=str, exit_fn=exits.append, kill_children=False, poll=0.05)
    with dog:
        for _ in dog.watch(_SlowLoader(log, "/ok.mp4", 0.3)):
            time.sleep(1.2)  # slow steps between batches do not count: only waiting for data
    assert exits == []


def test_a_dataloader_timeout_becomes_a_loader_hang_naming_the_file(tmp_path):
    import torch

    log = DecodeLog(tmp_path / "decoding")

    class Stuck(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            with log.decoding(f"/clip{i}.mp4"):
                if i == 1:
                    time.sleep(30)  # the worker is killed at shutdown
            return i

    loader = torch.utils.data.DataLoader(Stuck(), batch_size=1, num_workers=1, timeout=1.5)
    exits: list[int] = []
    dog = LoaderWatchdog(
        1.5,
        log,
        message=lambda h: f"{h.path}: decode hung for {h.seconds:.0f} s",
        exit_fn=exits.append,
        kill_children=False,
    )
    t0 = time.monotonic()
    with dog, pytest.raises(LoaderHang) as info:
        for _ in dog.watch(loader):
            pass
    assert isinstance(info.value, DecodeError) and info.value.hang.path == "/clip1.mp4"
    assert str(info.value).startswith("/clip1.mp4: decode hung for")
    assert exits == [] and time.monotonic() - t0 < 20


def test_mark_excluded_feeds_the_probe_cache_even_without_probing(tmp_path, tiny_data):
    clip = str(next(tiny_data.glob("drumming/*.mp4")))
    cache = tmp_path / "probe_cache.json"
    assert P.mark_excluded(cache, clip, "decode hung for 4 s mid-stream")
    assert P.probe_paths([clip], timeout=0, cache_file=cache) == {clip: "decode hung for 4 s mid-stream"}
    assert not P.mark_excluded(cache, str(tmp_path / "missing.mp4"), "x")


def test_with_the_probe_off_recorded_hangs_are_still_left_out(tmp_path, tiny_data):
    from imd_core.data.manifest import load_dataset_index
    from imd_core.train.setup import probe_splits

    index = load_dataset_index(tiny_data)
    hung = index.entries[3].path
    cfg = load_train_config("tiny", ["data.probe_timeout=0"])
    run = tmp_path / "run"
    assert probe_splits(cfg, [index], run) == ([index], [])  # no cache: nothing read, nothing probed
    P.mark_excluded(run / "probe_cache.json", hung, "decode hung for 5 s mid-stream")
    (kept,), excluded = probe_splits(cfg, [index], run)
    assert [(x.path, x.reason) for x in excluded] == [(hung, "decode hung for 5 s mid-stream")]
    assert len(kept) == len(index) - 1 and hung not in {e.path for e in kept.entries}
