"""End-to-end runs of ``imd train`` / ``imd eval`` on tiny generated clips and a tiny model.

Real decoding, a real transformers AST (tiny, random), real timm blocks, real
checkpoints. Runs that need a process of their own (stdout events, signals, torchrun)
are subprocesses of the CLI; the others call the same ``imd`` entry point in-process
(one thread, like the subprocesses, so float results are comparable bit for bit).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imd_core.train.event_schema import check_record
from imd_core.train.events import read_events as read_event_file
from tests.core.train.conftest import CLASSES, ENV, ROOT, imd, make_dataset, write_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def read_events(path: Path) -> list[dict]:
    """A run's events, each checked against the typed schema (every run in this file is)."""
    events = read_event_file(path)
    assert [p for e in events for p in check_record(e)] == []
    return events


def imd_here(*args: str) -> int:
    """``imd ARGS`` in this process (what a subprocess would run, without the start-up)."""
    from imd_core.cli.main import main

    return main(list(args))


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "imd_core", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def test_train_writes_a_complete_run_folder_and_eval_reads_it(tmp_path, tiny_data, recipe, capsys):
    run = tmp_path / "run"
    out = imd(
        "train",
        "--config",
        str(recipe),
        "--data",
        str(tiny_data),
        "--out",
        str(run),
        "--events",
        "-",
        "--set",
        "checkpoint_every_steps=2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    stdout_events = [json.loads(line) for line in out.stdout.splitlines()]  # every stdout line is one event
    file_events = read_events(run / "events.jsonl")
    assert stdout_events == file_events
    k = kinds(file_events)
    assert k[0] == "run_started" and k[-1] == "run_finished" and k.count("epoch") == 2
    assert {"step", "checkpoint_saved"} <= set(k)
    started = file_events[0]
    assert (
        started["classes"] == list(CLASSES) and started["resumed"] is False and started["precision"] == "fp32"
    )
    epochs = [e for e in file_events if e["event"] == "epoch"]
    assert set(epochs[0]["val"]) >= {
        "top1",
        "top5",
        "mean_class_accuracy",
        "relevance_accuracy",
        "audio_drop_rate",
    }
    # the frozen AST ran for every clip in epoch 0 and for none in epoch 1
    assert epochs[0]["ast_cache"]["misses"] > 0 and epochs[1]["ast_cache"]["misses"] == 0
    assert epochs[1]["ast_cache"]["hits"] == epochs[0]["ast_cache"]["misses"] + epochs[0]["ast_cache"]["hits"]
    for name in (
        "config.json",
        "run.json",
        "savld.json",
        "metrics.csv",
        "confusion_matrix.png",
        "best_metrics.json",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,lr,train_loss")
    for folder in ("last", "best"):
        assert {"config.json", "model.safetensors", "preprocessor_config.json", "savld.json"} <= {
            p.name for p in (run / folder).iterdir()
        }
    assert not list(run.glob(".last.*")) and not list(run.glob(".best.*"))
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["embed_dim"] == 32 and saved["checkpoint_every_steps"] == 2

    capsys.readouterr()
    code = imd_here(
        "eval",
        "--model",
        str(run / "best"),
        "--data",
        str(tiny_data),
        "--views",
        "2x3",
        "--json",
        "--split",
        "all",
        "--workers",
        "0",
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    m = json.loads(captured.out)
    assert m["clips"] == 18 and m["views"] == "2x3" and m["labels"] == list(CLASSES)
    for key in (
        "top1",
        "top5",
        "mean_class_accuracy",
        "per_class_accuracy",
        "confusion_matrix",
        "relevance_accuracy",
        "audio_drop_rate",
        "accuracy_audio_kept",
        "accuracy_audio_dropped",
    ):
        assert key in m
    assert sum(map(sum, m["confusion_matrix"])) == 18 and set(m["per_class_accuracy"]) == set(CLASSES)
    # "waving" clips have no audio track: they always count as dropped
    assert m["clips_audio_dropped"] >= 6 and 0 <= m["top1"] <= m["top5"] <= 1


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_data, tiny_savld):
    recipe = write_recipe(tmp_path / "r.json", tiny_savld, checkpoint_every_steps=1, epochs=2)
    assert (
        imd_here("train", "--config", str(recipe), "--data", str(tiny_data), "--out", str(tmp_path / "ref"))
        == 0
    )

    run = tmp_path / "killed"
    # 2 DataLoader workers here, none in the reference: the data order and each clip's
    # augmentation depend on (seed, epoch, clip) only, never on who loads it
    proc = start(
        "train",
        "--config",
        str(recipe),
        "--data",
        str(tiny_data),
        "--out",
        str(run),
        "--events",
        "-",
        "--set",
        "num_workers=2",
    )
    killed_at = None
    for line in proc.stdout:
        event = json.loads(line)
        # a mid-epoch checkpoint of the second epoch: kill at once, mid-step
        if event["event"] == "checkpoint_saved" and event["kind"] == "last" and event["step"] >= 4:
            proc.send_signal(signal.SIGKILL)
            killed_at = event
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    assert killed_at is not None and proc.returncode == -signal.SIGKILL
    assert "run_finished" not in kinds(read_events(run / "events.jsonl"))

    assert imd_here("train", "--out", str(run), "--resume") == 0  # config and data come from the run folder
    events = read_events(run / "events.jsonl")
    resumed = [e for e in events if e["event"] == "run_started"][-1]
    assert resumed["resumed"] is True and resumed["start_step"] >= 4
    assert events[-1]["event"] == "run_finished" and events[-1]["outcome"] == "completed"
    a, b = weights(tmp_path / "ref" / "last"), weights(run / "last")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == [], f"resumed run differs from the uninterrupted one in {different[:5]}"
    assert len((run / "metrics.csv").read_text().splitlines()) == 3


def test_sigterm_saves_last_and_exits_cleanly(tmp_path, tiny_data, tiny_savld, capsys):
    recipe = write_recipe(tmp_path / "r.json", tiny_savld, epochs=50)
    run = tmp_path / "run"
    proc = start(
        "train", "--config", str(recipe), "--data", str(tiny_data), "--out", str(run), "--events", "-"
    )
    for line in proc.stdout:
        if json.loads(line)["event"] == "step":
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    proc.wait(timeout=120)
    proc.stderr.close()
    proc.stdout.close()
    assert proc.returncode == 130
    last = [json.loads(x) for x in rest.splitlines()][-1]
    assert last["event"] == "run_finished" and last["outcome"] == "interrupted" and last["stopped"] is True
    assert (run / "last" / "training_state.pt").is_file()
    assert imd_here("train", "--config", str(recipe), "--data", str(tiny_data), "--out", str(run)) == 1
    assert "--resume" in capsys.readouterr().err  # never overwrites a run silently


def test_early_stopping_and_keep_best(tmp_path, tiny_data, tiny_savld):
    # a vanishing learning rate: validation cannot improve after the first epoch
    recipe = write_recipe(
        tmp_path / "r.json", tiny_savld, epochs=6, early_stopping_patience=2, optim={"lr": 1e-12}
    )
    run = tmp_path / "run"
    assert imd_here("train", "--config", str(recipe), "--data", str(tiny_data), "--out", str(run)) == 0
    events = read_events(run / "events.jsonl")
    stopped = [e for e in events if e["event"] == "early_stopped"]
    assert len(stopped) == 1 and stopped[0]["epoch"] == 2 and stopped[0]["best_epoch"] == 0
    assert events[-1]["outcome"] == "early_stopped" and events[-1]["epochs_run"] == 3
    best_saves = [e for e in events if e["event"] == "checkpoint_saved" and e["kind"] == "best"]
    assert [e["epoch"] for e in best_saves] == [0]


def test_a_failing_run_reports_run_failed(tmp_path, recipe, capsys):
    run = tmp_path / "run"
    code = imd_here(
        "train",
        "--config",
        str(recipe),
        "--data",
        str(tmp_path / "no_such_data"),
        "--out",
        str(run),
        "--events",
        "-",
    )
    out = capsys.readouterr()
    assert code == 3, out.err[-2000:]
    event = json.loads(out.out.splitlines()[-1])
    assert event["event"] == "run_failed" and "no_such_data" in event["reason"]
    code = imd_here(
        "train", "--config", str(recipe), "--data", str(tmp_path), "--out", str(run), "--set", "optim.lr=-1"
    )
    assert code == 2 and "lr" in capsys.readouterr().err


VAL_LOG = re.compile(r"validation epoch (\d+) \(rank (\d) of 2\): clips (\d+) top1 ([\d.]+) loss ([\d.]+)")


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tmp_path, tiny_savld, capsys):
    # Every clip has audio here: the relevance BCE is a mean over clips with audio, and
    # with audio-less clips unevenly split across ranks the mean of per-rank means would
    # differ from one process's mean (a real, documented DDP property, not a bug).
    tiny_data = make_dataset(tmp_path / "clips", per_class=4, silent_class=False)
    # SGD: Adam's first steps divide by sqrt(v), which turns float noise in near-zero
    # gradients (another summation order across ranks) into full-size updates.
    # 3 validation clips = one batch of 4: rank 1 validates nothing and must still join
    # the gather (imd eval below splits for real).
    recipe = write_recipe(
        tmp_path / "r.json",
        tiny_savld,
        epochs=2,
        batch_size=4,
        optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
    )
    assert (
        imd_here("train", "--config", str(recipe), "--data", str(tiny_data), "--out", str(tmp_path / "one"))
        == 0
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "imd_core",
    ]
    two = subprocess.run(
        [
            *torchrun,
            "-v",
            "train",
            "--config",
            str(recipe),
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "two"),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=ROOT,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    events = read_events(tmp_path / "two" / "events.jsonl")
    assert events[0]["world_size"] == 2 and kinds(events).count("run_started") == 1  # rank 0 only
    a, b = weights(tmp_path / "one" / "last"), weights(tmp_path / "two" / "last")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)

    # Validation ran on both ranks (a share each), and both got the gathered numbers.
    logged = VAL_LOG.findall(two.stderr)
    assert sorted((int(e), int(r)) for e, r, *_ in logged) == [(0, 0), (0, 1), (1, 0), (1, 1)], two.stderr[
        -2000:
    ]
    for epoch in (0, 1):
        per_rank = [row[2:] for row in logged if int(row[0]) == epoch]
        assert per_rank[0] == per_rank[1]  # every rank agrees
    one_val = [e["val"] for e in read_events(tmp_path / "one" / "events.jsonl") if e["event"] == "epoch"]
    two_val = [e["val"] for e in events if e["event"] == "epoch"]
    for v1, v2 in zip(one_val, two_val, strict=True):  # the same model within float noise
        assert v1["clips"] == v2["clips"] == 3 and v1["top1"] == v2["top1"] and v1["top5"] == v2["top5"]
        assert v2["loss"] == pytest.approx(v1["loss"], rel=1e-4)

    # imd eval under torchrun: the same JSON as one process (same batches, same order);
    # 12 clips in batches of 5, 5, 2: rank 0 gets the first and the short last one.
    model = str(tmp_path / "one" / "last")
    args = (
        "eval",
        "--model",
        model,
        "--data",
        str(tiny_data),
        "--split",
        "all",
        "--batch-size",
        "5",
        "--json",
        "--workers",
        "0",
        "--device",
        "cpu",
    )
    capsys.readouterr()
    assert imd_here(*args) == 0
    single = json.loads(capsys.readouterr().out)
    ddp = subprocess.run([*torchrun, *args], capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    lines = ddp.stdout.splitlines()
    assert len(lines) == 1  # rank 0 prints, rank 1 does not
    multi = json.loads(lines[0])
    assert multi["clips"] == single["clips"] == 12
    assert multi.pop("loss") == pytest.approx(single.pop("loss"), rel=1e-6)
    assert multi == single


def test_fine_tune_from_a_model_folder_with_new_classes_and_a_trainable_ast(tmp_path, tiny_data, tiny_savld):
    base = write_recipe(tmp_path / "base.json", tiny_savld, epochs=1, max_steps_per_epoch=1)
    assert (
        imd_here("train", "--config", str(base), "--data", str(tiny_data), "--out", str(tmp_path / "a")) == 0
    )
    # a manifest with two of the classes, one renamed in case only (labels match case-insensitively)
    rows = ["path,label"] + [
        f"{p},{p.parent.name.upper() if p.parent.name == 'clapping' else p.parent.name}"
        for p in sorted(tiny_data.glob("*/*.mp4"))
        if p.parent.name != "drumming"
    ]
    manifest = tmp_path / "two.csv"
    manifest.write_text("\n".join(rows) + "\n")
    tune = write_recipe(
        tmp_path / "tune.json",
        tiny_savld,
        epochs=1,
        max_steps_per_epoch=2,
        init={"from_model": str(tmp_path / "a" / "last"), "savld": str(tiny_savld)},
        model={"ast_trainable": True, "embed_dim": 32},
    )
    # the folder fixes the architecture: another width is refused, not ignored
    assert (
        imd_here(
            "train",
            "--config",
            str(tune),
            "--data",
            str(manifest),
            "--out",
            str(tmp_path / "x"),
            "--set",
            "model.embed_dim=64",
        )
        == 2
    )
    assert (
        imd_here("train", "--config", str(tune), "--data", str(manifest), "--out", str(tmp_path / "b")) == 0
    )
    events = read_events(tmp_path / "b" / "events.jsonl")
    epoch = [e for e in events if e["event"] == "epoch"][0]
    assert epoch["ast_cache"] is None  # a trainable AST is never cached
    cfg = json.loads((tmp_path / "b" / "last" / "config.json").read_text())
    assert (
        cfg["labels"] == ["CLAPPING", "waving"]
        and cfg["model"]["embed_dim"] == 32
        and cfg["model"]["ast_trainable"]
    )
    a, b = weights(tmp_path / "a" / "last"), weights(tmp_path / "b" / "last")
    assert b["head.weight"].shape[0] == 2 and a["head.weight"].shape[0] == 3
    assert not torch.equal(
        a["ast.model.audio_spectrogram_transformer.layers.0.attention.k_proj.weight"],
        b["ast.model.audio_spectrogram_transformer.layers.0.attention.k_proj.weight"],
    )


def test_gradient_accumulation_matches_the_full_batch(tmp_path, tiny_savld):
    data = make_dataset(tmp_path / "clips", per_class=3, silent_class=False)
    runs = {}
    for name, batch, accum in (("full", 4, 1), ("accum", 2, 2)):
        recipe = write_recipe(
            tmp_path / f"{name}.json",
            tiny_savld,
            epochs=1,
            batch_size=batch,
            grad_accum_steps=accum,
            val_fraction=0.0,
            optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
        )
        assert (
            imd_here("train", "--config", str(recipe), "--data", str(data), "--out", str(tmp_path / name))
            == 0
        )
        runs[name] = weights(tmp_path / name / "last")
    steps = [e["step"] for e in read_events(tmp_path / "accum" / "events.jsonl") if e["event"] == "step"]
    assert steps == [1, 2]  # 9 clips: two optimiser steps of 2 x 2 clips
    for key, value in runs["full"].items():
        if key != "gating_steps":  # counts forward passes (micro-batches)
            torch.testing.assert_close(runs["accum"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_unreadable_files_are_skipped_counted_and_reported(tmp_path, tiny_data, tiny_savld, capsys):
    from tests.media_factory import write_broken

    data = tmp_path / "clips"
    for clip in tiny_data.glob("*/*.mp4"):
        (data / clip.parent.name).mkdir(parents=True, exist_ok=True)
        (data / clip.parent.name / clip.name).symlink_to(clip)
    write_broken(data / "clapping" / "zz_truncated.mp4", "truncated")
    recipe = write_recipe(tmp_path / "r.json", tiny_savld, epochs=1, val_fraction=0.0)
    assert (
        imd_here("train", "--config", str(recipe), "--data", str(data), "--out", str(tmp_path / "run")) == 0
    )
    capsys.readouterr()
    code = imd_here("eval", "--model", str(tmp_path / "run"), "--data", str(data), "--json", "--workers", "0")
    out = capsys.readouterr()
    assert code == 3  # some files could not be read: reported, the rest evaluated
    m = json.loads(out.out)
    assert m["skipped"] == 1 and m["clips"] == 18 and "zz_truncated.mp4" in out.err


def test_train_from_backbones_an_ast_folder_and_a_timm_vit_file(tmp_path, tiny_data, tiny_savld):
    import timm
    from safetensors.torch import save_file
    from transformers import ASTConfig, ASTForAudioClassification

    from tests.core.train.conftest import tiny_ast_config

    torch.manual_seed(11)
    ast_dir = tmp_path / "ast"
    ASTForAudioClassification(ASTConfig(**tiny_ast_config())).save_pretrained(ast_dir)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, mlp_ratio=2.0, num_classes=0
    )
    vit_file = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(vit_file))
    recipe = write_recipe(
        tmp_path / "r.json", tiny_savld, epochs=1, max_steps_per_epoch=1, optim={"lr": 1e-12}
    )
    assert (
        imd_here(
            "train",
            "--config",
            str(recipe),
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "run"),
            "--set",
            f"model.ast_source={ast_dir}",
            "model.ast_config=null",
            f"model.video_init={vit_file}",
        )
        == 0
    )
    w = weights(tmp_path / "run" / "last")
    ast = ASTForAudioClassification.from_pretrained(ast_dir).state_dict()
    key = "audio_spectrogram_transformer.layers.0.attention.k_proj.weight"
    key = (
        key if key in ast else next(k for k in ast if k.endswith("k_proj.weight") or k.endswith("key.weight"))
    )
    assert torch.equal(w[f"ast.model.{key}"], ast[key])  # the frozen AST is the saved one, unchanged
    for stream in ("rgb", "motion"):  # both streams start from the ViT (lr ~0: still equal)
        torch.testing.assert_close(
            w[f"video.{stream}.blocks.0.attn.qkv.weight"], vit.state_dict()["blocks.0.attn.qkv.weight"]
        )
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["ast_source"] == str(ast_dir)


def test_a_second_run_into_the_same_folder_is_refused_with_the_first_ones_pid(
    tmp_path, tiny_data, recipe, capsys
):
    """Two runs into one --out used to both start (.best.old crash, two run_started)."""
    from imd_core.errors import TrainingError
    from imd_core.train.run_lock import RunLock

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from imd_core.train.run_lock import RunLock; "
         f"lock = RunLock({str(run)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = imd_here("train", "--config", str(recipe), "--data", str(tiny_data), "--out", str(run))
        err = capsys.readouterr().err
        assert code == 1 and f"pid {holder.pid}" in err and "in use by another run" in err
        assert not (run / "run.json").exists() and not (run / "events.jsonl").exists()
        with pytest.raises(TrainingError, match=str(holder.pid)):
            RunLock(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process (a SIGKILL included): the folder is free again
    RunLock(run).acquire().release()
