"""Fast tests of the training tab's pieces: job spec, events, history, manifest, command."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from imd_app.training.command import imd_command, imd_train_command
from imd_app.training.dataset_check import parse_check_report, write_filtered_manifest
from imd_app.training.events import EventTail, RunProgress, format_eta
from imd_app.training.history import JobHistory, JobRecord
from imd_app.training.spec import JobSpec, load_spec, save_spec
from imd_core.errors import ConfigError, DataError


def test_train_command_runs_the_cli_module_or_the_frozen_app(monkeypatch):
    program, args = imd_train_command(["--out", "x"])
    assert program == sys.executable and args == ["-m", "imd_core", "train", "--out", "x"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    program, args = imd_train_command(["--out", "x"])
    assert program == sys.executable and args == ["train", "--out", "x"]
    assert imd_command(["data", "check", "d", "--json"])[1] == ["data", "check", "d", "--json"]


def test_spec_validation_lists_the_paths_and_the_engines_verdict(tmp_path):
    spec = JobSpec(data=str(tmp_path / "missing"), run_dir="", epochs=0, start_from="backbones")
    assert spec.validate() == [
        f"dataset {tmp_path / 'missing'} does not exist; choose another folder or manifest",
        "choose a run folder",
        "TrainConfig: epochs must be in [1, 100000]",  # the values: the engine's own rules and words
    ]
    with pytest.raises(ConfigError):
        spec.check()
    assert JobSpec(data=str(tmp_path), run_dir=str(tmp_path / "run"), start_from="backbones").validate() == []
    with pytest.raises(ConfigError, match="valid keys"):
        JobSpec.from_dict({"epochs": 2, "epochz": 3})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"learning_rate": 0.0}, "optim.lr must be a finite number > 0"),
        ({"cross_modal_p": 1.5}, "augment.cross_modal_p must be in [0, 1]"),
        ({"relevance_tau": 1.5}, "relevance_tau must be in [0, 1]"),
        ({"extra_set": ("oops",)}, "expected key=value"),
        ({"extra_set": ("model.no_such_key=1",)}, "unknown key(s) ['no_such_key']"),
        ({"start_from": "model"}, "it is not an IMD Studio model folder"),
        ({"start_from": "demo", "tag_top_k": -1}, "tag_top_k must be in [1, 10000]"),
        ({"start_from": "kinetics400", "epochs": 20_000}, "epochs must be in [1, 10000]"),
    ],
)
def test_spec_values_are_checked_by_the_config_imd_train_builds(tmp_path, change, words):
    """One set of rules: the form's values reach the engine's config loader before the job is queued."""
    spec = JobSpec(data=str(tmp_path), run_dir=str(tmp_path / "run"), model_dir=str(tmp_path), **change)
    problems = spec.validate()
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("start_from", ["demo", "backbones"])
def test_spec_arguments_are_accepted_by_the_engine_config(tmp_path, start_from):
    from imd_core.train.config import load_train_config

    spec = JobSpec(
        data=str(tmp_path),
        run_dir=str(tmp_path / "run"),
        start_from=start_from,
        learning_rate=3e-4,
        num_frames=4,
        imd_enabled=False,
        cross_modal_p=0.25,
        relevance_tau=0.1,
        ast_trainable=True,
    )
    args = spec.to_train_args(resume=True)
    assert args[args.index("--out") + 1] == spec.run_dir and "--resume" in args
    assert args[args.index("--events") + 1] == "-"
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    cfg = load_train_config(spec.config, sets)
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.augment.cross_modal_p == pytest.approx(0.25)
    assert cfg.model["imd"] is False and cfg.model["ast_trainable"] is True
    assert cfg.model["relevance_tau"] == pytest.approx(0.1)
    if start_from == "demo":
        assert cfg.init.from_model == "demo"
    else:
        assert cfg.init.from_model is None and cfg.model["num_frames"] == 4
    # top-k left at 0 keeps the starting model's own rule (the demo's relevance net was
    # trained on its top 2 above "Silence"); a value the user sets is passed on
    assert not [s for s in sets if s.startswith("model.tag_top_k")]
    sets = [a for a in JobSpec(**{**spec.__dict__, "tag_top_k": 3}).to_train_args() if a.startswith("model.")]
    assert "model.tag_top_k=3" in sets


def test_spec_is_saved_with_the_job(tmp_path):
    spec = JobSpec(data="d", run_dir=str(tmp_path), excluded=("a.mp4",), skip_bad_files=True, epochs=3)
    save_spec(spec, tmp_path)
    assert load_spec(tmp_path) == spec
    assert spec.train_data_path().endswith("dataset_filtered.csv")


def _events() -> list:
    """A stopped two-epoch run, as the engine writes it (schema-checked)."""
    from imd_core.train import event_schema as ev

    val = ev.ValMetrics(
        loss=1.1,
        top1=0.75,
        top5=1.0,
        mean_class_accuracy=0.7,
        relevance_accuracy=0.6,
        audio_drop_rate=0.25,
        clips=4,
        skipped=0,
    )
    started = ev.RunStarted(
        time=100.0,
        config="tiny",
        device="cpu",
        precision="fp32",
        world_size=1,
        epochs=2,
        steps_per_epoch=4,
        total_steps=8,
        train_clips=16,
        val_clips=4,
        classes=["a", "b"],
        resumed=False,
        start_epoch=0,
        start_step=0,
        excluded=[],
        class_transfer=None,
    )
    return [
        started,
        ev.Step(time=101.0, epoch=0, step=2, total_steps=8, loss=1.5, losses={"ce": 1.5}, lr=1e-4, clips_per_s=7.5),
        ev.Step(time=102.0, epoch=0, step=4, total_steps=8, loss=1.2, losses={"ce": 1.2}, lr=1e-4, clips_per_s=8.0),
        ev.Epoch(time=103.0, epoch=0, step=4, train=ev.TrainMetrics(loss=1.3, top1=0.5, clips=16, skipped=0), val=val,
                 best=True, elapsed_s=3.0, eta_s=3.0, ast_cache=None, frame_cache=None),
        ev.CheckpointSaved(time=103.5, kind="best", path="/r/best", epoch=0, step=4),
        ev.Step(time=104.0, epoch=1, step=6, total_steps=8, loss=0.9, losses={"ce": 0.9}, lr=1e-4, clips_per_s=9.0),
        ev.RunFinished(time=105.0, outcome="interrupted", stopped=True, epochs_run=1, step=6, best_epoch=0,
                       best_metric="val_top1", best_value=0.75, elapsed_s=5.0),
    ]  # fmt: skip


def test_progress_folds_events_into_metrics_eta_and_outcome():
    import dataclasses

    from imd_core.train import event_schema as ev

    events = _events()
    assert all(ev.check_record(ev.to_record(e)) == [] for e in events)
    progress = RunProgress()
    lines = [progress.apply(e) for e in events]
    assert progress.total_steps == 8 and progress.step == 6
    assert progress.fraction == pytest.approx(6 / 8)
    assert progress.step_losses == [(2, 1.5), (4, 1.2), (6, 0.9)]
    (epoch,) = progress.epochs
    assert (epoch.epoch, epoch.train_acc, epoch.val_acc, epoch.relevance_acc, epoch.audio_drop_rate) == (
        0,
        0.5,
        0.75,
        0.6,
        0.25,
    )
    assert progress.best["val_acc"] == 0.75 and progress.clips_per_s == 9.0
    assert progress.outcome == "stopped" and "stopped" in lines[-1]
    assert RunProgress().apply(events[0]).startswith("run started")
    # ETA after step 2 of 8 at 1 s: 1 * (6/8) / (2/8) s
    p2 = RunProgress()
    for e in events[:2]:
        p2.apply(e)
    assert p2.eta_s == pytest.approx(1.0 * (6 / 8) / (2 / 8))
    # "best" is the engine's flag, not recomputed: under val_loss a lower top-1 can be best
    worse_top1 = dataclasses.replace(
        events[3], epoch=1, val=dataclasses.replace(events[3].val, top1=0.5, loss=0.9)
    )
    p3 = RunProgress()
    for e in [*events[:4], worse_top1]:
        p3.apply(e)
    assert p3.best["val_acc"] == 0.5 and p3.best["val_loss"] == 0.9
    p4 = RunProgress()
    for e in [
        *events[:4],
        dataclasses.replace(worse_top1, best=False, val=dataclasses.replace(events[3].val, top1=0.9)),
    ]:
        p4.apply(e)
    assert p4.best["val_acc"] == 0.75  # not improved by the engine's rule: the best stays epoch 0
    finished = RunProgress()
    for e in [*events[:-1], dataclasses.replace(events[-1], outcome="completed", stopped=False)]:
        finished.apply(e)
    assert finished.outcome == "finished" and finished.fraction == 1.0
    failed = RunProgress()
    failed.apply(ev.RunFailed(reason="dataset has one class; add another", error="DataError"))
    assert failed.outcome == "failed" and "one class" in failed.failure
    assert format_eta(3725) == "1:02:05" and format_eta(65) == "1:05" and format_eta(None) == "--"


def test_event_tail_reads_only_complete_new_lines_of_the_schema(tmp_path):
    from imd_core.train import event_schema as ev

    first, second = (json.dumps(ev.to_record(e)) for e in _events()[:2])
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read_new() == ([], [])
    with open(path, "w") as f:
        f.write(first + "\nnot json\n" + second[:10])
    events, other = tail.read_new()
    assert [type(e).__name__ for e in events] == ["RunStarted"] and other == ["not json"]
    with open(path, "a") as f:
        f.write(second[10:] + "\n")
    events, _ = tail.read_new()
    assert events == [_events()[1]]
    # a line of another shape is shown as text, never guessed at
    with open(path, "a") as f:
        f.write(
            json.dumps({"type": "step", "clips_per_sec": 3})
            + "\n"
            + json.dumps({"event": "step", "step": 1})
            + "\n"
        )
    events, other = tail.read_new()
    assert events == [] and len(other) == 2
    assert tail.read_new() == ([], [])


def test_history_persists_and_survives_a_damaged_file(tmp_path):
    path = tmp_path / "jobs.json"
    history = JobHistory(path)
    record = JobRecord.new({"epochs": 2}, str(tmp_path / "run"))
    record.best = {"val_acc": 0.5}
    history.add(record)
    again = JobHistory(path)
    assert again.get(record.id) == record
    path.write_text("{ broken")
    assert JobHistory(path).records == []
    assert list(tmp_path.glob("jobs.broken-*.json"))


def test_check_report_and_filtered_manifest(tmp_path):
    report = {
        "files": [
            {"path": str(tmp_path / "a" / "1.mp4"), "label": "a", "status": "ok"},
            {"path": str(tmp_path / "a" / "2.mp4"), "label": "a", "status": "no-audio"},
            {
                "path": str(tmp_path / "b" / "3.mp4"),
                "label": "b",
                "status": "error",
                "reason": "moov atom not found",
            },
        ]
    }
    summary = parse_check_report(report, str(tmp_path))
    assert summary.class_counts == {"a": 2}
    assert summary.unusable == ((str(tmp_path / "b" / "3.mp4"), "moov atom not found"),)
    assert summary.no_audio == (str(tmp_path / "a" / "2.mp4"),)
    # Folder tree.
    for name in ("a/1.mp4", "a/2.mp4", "b/3.mp4", "b/4.mp4", "b/notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    out = write_filtered_manifest(tmp_path, [str(tmp_path / "b" / "3.mp4")], tmp_path / "run" / "m.csv")
    rows = list(csv.DictReader(out.open()))
    assert [(r["label"], r["path"].split("/")[-1]) for r in rows] == [
        ("a", "1.mp4"),
        ("a", "2.mp4"),
        ("b", "4.mp4"),
    ]
    # A manifest keeps its columns; relative paths become absolute.
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\na/1.mp4,a,train\nb/3.mp4,b,val\n")
    rows = list(
        csv.DictReader(
            write_filtered_manifest(manifest, [str(tmp_path / "b/3.mp4")], tmp_path / "f.csv").open()
        )
    )
    assert rows == [{"path": str((tmp_path / "a/1.mp4").resolve()), "label": "a", "split": "train"}]
    with pytest.raises(DataError):
        write_filtered_manifest(
            manifest, [str(tmp_path / "a/1.mp4"), str(tmp_path / "b/3.mp4")], tmp_path / "g.csv"
        )


def test_a_starting_model_must_match_the_recipe_size(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": "imd-studio-model", "model": {"size": "tiny"}}))
    spec = JobSpec(
        data=str(tmp_path), run_dir=str(tmp_path / "run"), start_from="model", model_dir=str(folder)
    )
    assert spec.replace(config="tiny").validate() == []
    (problem,) = spec.replace(config="base").validate()
    assert "fixes the architecture: it has size='tiny', the recipe says 'base'" in problem
    # the engine's rule, whole: the demo recipe's own inputs (64 px, conv stem) do not fit either
    (problem,) = spec.replace(config="demo").validate()
    assert "fixes the architecture" in problem
    (folder / "config.json").write_text("[]")
    assert "not an IMD Studio model config" in spec.validate()[0]


def test_resume_passes_no_config_once_the_run_folder_has_its_own(tmp_path):
    """imd train warned '--config tiny is ignored' on every Resume from the app."""
    spec = JobSpec(data=str(tmp_path), run_dir=str(tmp_path / "run"))
    assert "--config" in spec.to_train_args(resume=True)  # stopped before config.json: needed
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert "--config" not in spec.to_train_args(resume=True)
    assert "--config" in spec.to_train_args(resume=False)


def test_epochs_count_from_one_wherever_a_person_reads_them(capsys):
    """The log said 'epoch 0' and 'Best: epoch 1' for the same epoch; events stay 0-based."""
    from imd_core.cli.train import HumanProgress
    from imd_core.train import event_schema as ev

    event = _events()[3]  # epoch 0
    assert RunProgress().apply(event).startswith("epoch 1:")
    HumanProgress(__import__("sys").stderr).write(json.dumps(ev.to_record(event)))
    assert capsys.readouterr().err.startswith("epoch 1: ")
    early = ev.EarlyStopped(epoch=4, best_epoch=2, metric="val_top1", best_value=0.8, patience=2)
    HumanProgress(__import__("sys").stderr).write(json.dumps(ev.to_record(early)))
    assert "(best epoch 3)" in capsys.readouterr().err


@pytest.mark.parametrize("start_from", ["kinetics400", "model"])
def test_a_pretrained_start_runs_imd_train_on_the_real_backbones(tmp_path, start_from):
    import argparse

    from imd_core.cli import train as train_cli
    from imd_core.pretrained.finetune import FinetuneOptions, options_from_overrides

    folder = tmp_path / "finetuned"  # a folder fine-tuned from kinetics400 says so in its config
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": "imd-studio-pretrained", "model": {}}))
    spec = JobSpec(data=str(tmp_path), run_dir=str(tmp_path / "run"), start_from=start_from, model_dir=str(folder),
                   learning_rate=2e-3, unfreeze_video=True, relevance_weight=0.5)  # fmt: skip
    assert spec.starts_from_pretrained()
    args = spec.to_train_args()
    assert "--config" not in args  # the pretrained model fixes the architecture: no recipe
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    ns = parser.parse_args(["train", *args])
    assert train_cli.starts_from_pretrained(ns, Path(spec.run_dir))
    options = options_from_overrides(FinetuneOptions(), ns.overrides)
    expected_base = "kinetics400" if start_from == "kinetics400" else str(folder.resolve())
    assert (options.base, options.lr, options.unfreeze, options.relevance_weight) == (
        expected_base,
        2e-3,
        "video",
        0.5,
    )
    # a demo-style start never takes the pretrained path
    assert not JobSpec(
        data=str(tmp_path), run_dir=str(tmp_path / "r"), start_from="demo"
    ).starts_from_pretrained()
