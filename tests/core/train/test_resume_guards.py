"""``imd train --resume`` continues exactly what was asked, or refuses; Ctrl+C in set-up stops.

Found by an attack on the CLI: after an attempt killed before it wrote ``config.json``,
``--resume`` trained the default tiny recipe and overwrote the original command in
``run.json``; after a checkpoint swap cut between ``last/`` and ``.last.old`` the first
``--resume`` said "already holds a run; pass --resume"; and the first Ctrl+C during the
set-up (a probe that hangs) was ignored, while the probe's workers died of it and
reported a good file as crashed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from imd_core.train.events import read_events
from tests.core.train.conftest import CLASSES

ROOT = Path(__file__).resolve().parents[3]


class Calls:
    """Stands in for the training engine: records what ``imd train`` asked of it."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail, self.calls = fail, []

    def __call__(self, cfg, data, run_dir, *, resume=False, events_stream=None):
        from imd_core.train.engine import RunResult

        self.calls.append({"cfg": cfg, "data": data, "resume": resume})
        if self.fail is not None:
            raise self.fail
        return RunResult("completed", cfg.epochs, 0, 0, None)


def imd_train(monkeypatch, engine: Calls, *args: str) -> int:
    from imd_core.cli.main import main

    monkeypatch.setattr("imd_core.train.engine.train", engine)
    monkeypatch.setattr(sys, "argv", ["imd", "train", *args])  # what run.json records
    return main(["train", *args])


def test_resume_after_a_kill_before_config_json_continues_the_original_config(
    tmp_path, tiny_data, recipe, monkeypatch
):
    run = tmp_path / "run"
    first = [
        "--config",
        str(recipe),
        "--data",
        str(tiny_data),
        "--out",
        str(run),
        "--set",
        "epochs=3",
        "seed=11",
    ]
    # killed in set-up (here: the engine never returns), before the engine wrote anything
    assert imd_train(monkeypatch, Calls(fail=KeyboardInterrupt()), *first) == 130
    original = json.loads((run / "run.json").read_text())
    assert original["argv"] == ["train", *first]

    for lost_config_json in (False, True):  # written first now; an older attempt never wrote it
        if lost_config_json:
            (run / "config.json").unlink()
        engine = Calls()
        assert imd_train(monkeypatch, engine, "--out", str(run), "--resume") == 0
        cfg = engine.calls[0]["cfg"]
        assert (cfg.name, cfg.epochs, cfg.seed) == (
            "test-tiny",
            3,
            11,
        )  # not the default tiny recipe (20 epochs)
        assert engine.calls[0]["data"] == Path(tiny_data) and engine.calls[0]["resume"] is False
        info = json.loads((run / "run.json").read_text())
        assert info["argv"] == original["argv"]  # the original command is kept
        assert info["resumes"][-1] == ["train", "--out", str(run), "--resume"]


def test_resume_refuses_when_nothing_says_what_to_run(tmp_path, tiny_data, monkeypatch, capsys):
    run = tmp_path / "run"
    engine = Calls()
    assert imd_train(monkeypatch, engine, "--data", str(tiny_data), "--out", str(run), "--resume") == 2
    assert "holds no run to resume" in capsys.readouterr().err and engine.calls == []

    run.mkdir()  # an older run.json: the command only
    (run / "run.json").write_text(json.dumps({"data": str(tiny_data), "argv": ["train", "--out", str(run)]}))
    assert imd_train(monkeypatch, engine, "--out", str(run), "--resume") == 2
    err = capsys.readouterr().err
    assert "has no config.json" in err and "without --resume" in err and engine.calls == []
    assert len(err.strip().splitlines()) == 1


def test_resume_after_a_swap_cut_between_last_and_last_old(tmp_path, tiny_data, recipe, monkeypatch):
    run = tmp_path / "run"
    first = ["--config", str(recipe), "--data", str(tiny_data), "--out", str(run)]
    assert imd_train(monkeypatch, Calls(), *first) == 0
    (run / "last").mkdir()
    (run / "last" / "training_state.pt").write_bytes(b"state")
    os.replace(run / "last", run / ".last.old")  # the first rename of a swap, then killed
    (run / ".last.tmp-123").mkdir()

    engine = Calls()
    assert imd_train(monkeypatch, engine, "--out", str(run), "--resume") == 0
    assert engine.calls[0]["resume"] is True  # continued from the restored last/, not restarted
    assert (run / "last" / "training_state.pt").read_bytes() == b"state"
    assert not (run / ".last.old").exists() and not (run / ".last.tmp-123").exists()


def test_a_refused_new_run_changes_nothing_in_the_run_folder(
    tmp_path, tiny_data, recipe, monkeypatch, capsys
):
    run = tmp_path / "run"
    first = ["--config", str(recipe), "--data", str(tiny_data), "--out", str(run)]
    assert imd_train(monkeypatch, Calls(), *first) == 0
    (run / "last").mkdir()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    engine = Calls()
    assert imd_train(monkeypatch, engine, *first[:-1], str(run), "--set", "epochs=9") == 1
    assert "--resume" in capsys.readouterr().err and engine.calls == []
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before


@pytest.mark.timeout(240)
@pytest.mark.skipif(not hasattr(os, "mkfifo") or "concat" not in av.formats_available,
                    reason="needs named pipes (POSIX) and FFmpeg's concat demuxer")  # fmt: skip
def test_ctrl_c_during_set_up_stops_train_at_once(tmp_path, tiny_data, recipe):
    data = tmp_path / "data"
    for c in CLASSES:
        (data / c).mkdir(parents=True)
        for clip in sorted((tiny_data / c).glob("*.mp4"))[:2]:
            (data / c / clip.name).symlink_to(clip)
    os.mkfifo(data / CLASSES[0] / "stream.fifo")
    (data / CLASSES[0] / "hangs.mp4").write_text(
        "ffconcat version 1.0\nfile stream.fifo\n"
    )  # the probe hangs
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "imd_core", "train", "--config", str(recipe), "--data", str(data), "--out", str(run),
         "--set", "data.probe_timeout=300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run / "run.json").exists():
            time.sleep(0.2)
        time.sleep(4.0)  # in set-up: the probe's workers decode, one file hangs
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C reaches the whole process group
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "Interrupted system call" not in err  # no worker died of it and failed its file
    last = read_events(run / "events.jsonl")[-1]
    assert last["event"] == "run_finished" and last["outcome"] == "interrupted" and "set-up" in last["reason"]
    assert not (run / "last").exists()
