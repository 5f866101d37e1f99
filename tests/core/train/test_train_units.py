"""Unit tests of the training engine's parts (no media, no training run)."""

from __future__ import annotations

import io
import json
import os
import random

import numpy as np
import pytest
import torch

from imd_core.errors import CheckpointError, ConfigError, TrainingError
from imd_core.train import event_schema as ev
from imd_core.train.ast_cache import ASTCache, tagger_id
from imd_core.train.checkpointing import (
    STATE_FILE,
    load_training_state,
    recover_interrupted_swap,
    rng_state,
    set_rng_state,
)
from imd_core.train.config import SHIPPED_CONFIGS, TrainConfig, load_train_config
from imd_core.train.data_order import EpochOrderSampler, SeededItems
from imd_core.train.events import EVENT_TYPES, EventWriter, read_events
from imd_core.train.metrics import MetricAccumulator, MetricsCsv, save_confusion_png
from imd_core.train.setup import lr_factor


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_load_and_round_trip(name):
    cfg = load_train_config(name)
    assert cfg.version == 1 and cfg.model["size"] in ("tiny", "small", "base", "large")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_overrides_reach_every_section():
    cfg = load_train_config(
        "tiny", ["optim.lr=0.5", "model.num_frames=4", "epochs=3", "augment.cross_modal_p=0.5"]
    )
    assert (cfg.optim.lr, cfg.model["num_frames"], cfg.epochs, cfg.augment.cross_modal_p) == (0.5, 4, 3, 0.5)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["optim.lrr=1"], ["lrr", "valid keys", "lr"]),
        (["model.nope=1"], ["nope", "valid keys", "num_frames"]),
        (["optim.name=adam"], ["adam", "adamw", "sgd"]),
        (["epochs=0"], ["epochs"]),
        (["bogus=1"], ["bogus", "valid keys"]),
    ],
)
def test_bad_keys_and_values_are_refused_with_the_valid_ones(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_train_config("tiny", overrides)
    for word in words:
        assert word in str(err.value)


def test_unknown_key_in_a_file_and_wrong_version_are_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": 1, "epochz": 3}))
    with pytest.raises(ConfigError, match="epochz.*valid keys"):
        load_train_config(path)
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(ConfigError, match="version 99"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="unknown config 'hugest'"):
        load_train_config("hugest")


# ----------------------------------------------------------------------------- events
def test_events_are_one_flushed_json_object_per_line(tmp_path):
    stream = io.StringIO()
    w = EventWriter(tmp_path / "events.jsonl", stream, run="r")
    w.write(ev.Features(done=1, total=2, cached=0))
    # numpy / torch scalars from a training loop are written as plain numbers
    w.write(ev.Step(epoch=0, step=1, total_steps=2, loss=float("nan"), losses={}, lr=np.float32(0.5),
                    clips_per_s=torch.tensor(3.0)))  # fmt: skip
    # flushed before close: a parent process sees the line at once
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 2
    w.close()
    lines = stream.getvalue().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["features", "step"]
    step = json.loads(lines[1])
    assert step["loss"] is None and step["lr"] == 0.5 and step["clips_per_s"] == 3.0 and step["run"] == "r"
    assert set(EVENT_TYPES) >= {
        "run_started",
        "step",
        "epoch",
        "checkpoint_saved",
        "early_stopped",
        "run_finished",
        "run_failed",
    }
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"event": "st')  # a torn last line of a killed run
    assert len(read_events(tmp_path / "events.jsonl")) == 2


# ------------------------------------------------------------------------ checkpoints
def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = rng_state()
    torch.save({"version": 1, "rng": state}, tmp_path / "s.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_state_refuses_pickles_and_missing_files(tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        load_training_state(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"version": 1, "x": Evil()}, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError, match="cannot read resume state"):
        load_training_state(tmp_path)


def test_interrupted_swap_is_recovered(tmp_path):
    (tmp_path / ".last.old").mkdir()
    (tmp_path / ".last.old" / "model.safetensors").write_bytes(b"x")
    (tmp_path / ".last.tmp-123").mkdir()
    recover_interrupted_swap(tmp_path)
    assert (tmp_path / "last" / "model.safetensors").exists()
    assert not (tmp_path / ".last.tmp-123").exists()


# ---------------------------------------------------------------------------- AST cache
def test_ast_cache_keys_by_clip_window_and_tagger(tmp_path):
    a = ASTCache(tmp_path, "tagA")
    missing, found = a.lookup(["f1@0.0-2.5", "f2@0.0-2.5"])
    assert missing == [0, 1] and found == [None, None]
    a.put("f1@0.0-2.5", torch.ones(4), torch.zeros(3))
    fresh = ASTCache(tmp_path, "tagA")  # a new process reads it from disk
    missing, found = fresh.lookup(["f1@0.0-2.5", "f1@2.5-5.0"])
    assert missing == [1] and torch.equal(found[0][0], torch.ones(4))
    assert ASTCache(tmp_path, "tagB").get("f1@0.0-2.5") is None  # another tagger never reads it
    s1 = {"w": torch.ones(3, 3)}
    s2 = {"w": torch.ones(3, 3) * 1.001}
    assert tagger_id(s1) == tagger_id({"w": torch.ones(3, 3)}) != tagger_id(s2)


# ---------------------------------------------------------------------------- data order
def test_epoch_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    s = EpochOrderSampler(20, 4, seed=7)
    s.set_epoch(1)
    full = list(s)
    assert len(full) == 20 and sorted(full) == list(range(20))
    s.set_epoch(0)
    assert list(s) != full
    s.set_epoch(1, start_batch=2)
    assert list(s) == full[8:]
    assert len(s) == 12


def test_ddp_ranks_split_each_global_batch():
    single = EpochOrderSampler(22, 4, seed=1)
    single.set_epoch(3)
    ranks = [EpochOrderSampler(22, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(3)
    one, r0, r1 = list(single), list(ranks[0]), list(ranks[1])
    assert len(one) == 20 and len(r0) == len(r1) == 10  # whole global batches only
    for b in range(5):
        assert sorted(one[4 * b : 4 * b + 4]) == sorted(r0[2 * b : 2 * b + 2] + r1[2 * b : 2 * b + 2])


def test_item_randomness_depends_on_seed_epoch_and_index_only():
    class Draw:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return (random.random(), float(np.random.rand()), float(torch.rand(1)))

    d = SeededItems(Draw(), seed=4)
    d.epoch = 2
    a = [d[i] for i in (3, 1)]
    random.seed(99)
    torch.manual_seed(99)
    assert [d[i] for i in (3, 1)] == a
    d.epoch = 3
    assert d[3] != a[0]


# ------------------------------------------------------------------------------ metrics
def test_metrics_top1_top5_mean_class_and_audio_split(tmp_path):
    acc = MetricAccumulator(num_classes=3)
    logits = torch.tensor([[3.0, 1, 0], [0, 3, 1], [3, 1, 0], [0, 1, 3]])
    labels = torch.tensor([0, 1, 1, 2])
    kept = torch.tensor([True, True, False, False])
    acc.update(
        logits,
        labels,
        kept,
        relevance_prob=torch.tensor([0.9, 0.2, 0.1, 0.8]),
        relevance_target=torch.tensor([0.5, 0.0, 0.0, 0.0]),
        loss=1.0,
    )
    m = acc.compute(["a", "b", "c"])
    assert m["top1"] == 0.75 and m["top5"] == 1.0
    assert m["mean_class_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert (
        m["audio_drop_rate"] == 0.5 and m["accuracy_audio_kept"] == 1.0 and m["accuracy_audio_dropped"] == 0.5
    )
    assert m["relevance_accuracy"] == 0.75
    # the decision is the model's own: at its threshold 0.85 the 0.8 clip counts as dropped
    strict = MetricAccumulator(num_classes=3, threshold=0.85)
    strict.update(
        logits,
        labels,
        kept,
        relevance_prob=torch.tensor([0.9, 0.2, 0.1, 0.8]),
        relevance_target=torch.tensor([0.5, 0.0, 0.0, 0.0]),
    )
    assert strict.compute(["a", "b", "c"])["relevance_accuracy"] == 1.0
    png = save_confusion_png(m["confusion_matrix"], ["a", "b", "c"], tmp_path / "cm.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_metrics_csv_drops_rows_of_unfinished_epochs_on_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    csv = MetricsCsv(path)
    for e in range(3):
        csv.append({"epoch": e, "val_top1": 0.5})
    MetricsCsv(path, keep_epochs_below=2)
    rows = path.read_text().splitlines()
    assert len(rows) == 3 and rows[-1].startswith("1,")


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, total=10, warmup=2, name="cosine", min_ratio=0.1) for s in range(10)]
    assert (
        f[0] == 0.5
        and f[1] == 1.0
        and f[2] == 1.0
        and f[-1] < 0.2
        and all(a >= b for a, b in zip(f[1:], f[2:], strict=False))
    )
    assert lr_factor(5, total=10, warmup=0, name="constant", min_ratio=0.1) == 1.0


def test_human_progress_lines_never_break_on_odd_values():
    from imd_core.cli.train import HumanProgress

    out = io.StringIO()
    h = HumanProgress(out)
    step = {"event": "step", "v": 1, "time": 1.0, "run": "r", "epoch": 0, "step": 2, "total_steps": 9, "loss": 0.5,
            "losses": {}, "lr": 1e-3, "clips_per_s": 4.0}  # fmt: skip
    h.write(json.dumps(step))
    h.write(json.dumps({**step, "step": 3, "loss": None}))  # a non-finite loss is written as null
    h.write(
        json.dumps(
            {"event": "checkpoint_saved", "v": 1, "kind": "last", "path": "r/last", "epoch": 1, "step": 3}
        )
    )
    h.write(json.dumps({"event": "step", "step": 4}))  # not an event of the schema: shown as it is
    lines = out.getvalue().splitlines()
    assert lines[0].strip().startswith("step 2/9  loss 0.5000") and "loss n/a" in lines[1]
    assert lines[2] == '{"event": "step", "step": 4}' and len(lines) == 3


@pytest.mark.parametrize("new_class", [None, "juggling"])
def test_fine_tuning_the_demo_keeps_its_classes_by_name_in_any_order(new_class):
    """The dataset's labels may come in another order: each known class keeps its head row, so
    fine-tuning starts at the demo's accuracy (it used to start at chance, silently)."""
    from imd_core.model.checkpoint import load_model
    from imd_core.resources import demo_model_dir
    from imd_core.train.setup import build_model

    src = load_model(demo_model_dir()).eval()
    labels = list(reversed(src.config.labels)) + ([new_class] if new_class else [])
    cfg = TrainConfig.from_dict({"init": {"from_model": "demo"}})
    model = build_model(cfg, labels).eval()
    model.set_savld(src.savld)  # what the engine's build_savld does (a new class gets an empty row)
    assert model.class_transfer == {
        "kept": list(reversed(src.config.labels)),
        "new": [new_class] if new_class else [],
    }
    torch.manual_seed(0)
    c = src.config
    rgb = torch.rand(2, c.num_frames, 3, c.image_size, c.image_size)
    fbank = torch.randn(2, c.max_length, c.num_mel_bins)
    with torch.no_grad():
        a = src(rgb, rgb, fbank=fbank).logits
        b = model(rgb, rgb, fbank=fbank).logits
    order = [list(src.config.labels).index(name) for name in labels[: len(src.config.labels)]]
    if new_class is None:  # the same model, classes permuted: same scores, gate included
        assert torch.allclose(b, a[:, order], atol=1e-5)
    with torch.no_grad():  # with a new class the relevance net starts afresh; the visual head never does
        va = src(rgb, rgb, fbank=fbank).visual_logits
        vb = model(rgb, rgb, fbank=fbank).visual_logits
    assert torch.allclose(vb[:, : len(order)], va[:, order], atol=1e-5)
