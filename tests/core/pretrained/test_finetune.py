"""Fine-tuning on frozen I3D + YAMNet features: the cache, the learned relevance net, the
saved folder, and that it learns a small task (held-out clips far above chance)."""

from __future__ import annotations

import json

import pytest

from imd_core.resources import kinetics400_installed
from tests.media_factory import write_clip


@pytest.fixture(scope="module")
def two_class_data(tmp_path_factory):
    """Two visually different classes (colour-coded frames vs a moving texture), 8 clips each."""
    root = tmp_path_factory.mktemp("ft") / "data"
    for cls, pattern, audio in (
        ("flashing colours", "index", "sine"),
        ("moving texture", "texture", "chirp"),
    ):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            write_clip(root / cls / f"{i}.mp4", seconds=2.0, width=160, height=120, pattern=pattern,
                       audio_pattern=audio, audio_hz=300.0 + 40 * i, seed=i)  # fmt: skip
    return root


def _events(text: str) -> list[dict]:
    """The events printed, each checked against the typed schema the engine shares."""
    from imd_core.train.event_schema import check_record

    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [p for e in events for p in check_record(e)] == []
    return events


@pytest.mark.slow
def test_imd_train_from_kinetics400_learns_resumes_and_saves_a_loadable_folder(
    two_class_data, tmp_path, capsys
):
    if not kinetics400_installed():
        pytest.fail("kinetics400 is not built: run bash scripts/setup.sh --dev")
    from imd_core.cli.main import main

    run = tmp_path / "run"
    argv = ["train", "--data", str(two_class_data), "--out", str(run), "--set", "init.from_model=kinetics400",
            "finetune.val_fraction=0.25", "--epochs", "40", "--device", "cpu", "--events", "-"]  # fmt: skip
    assert main(argv) == 0
    events = _events(capsys.readouterr().out)
    kinds = [e["event"] for e in events]
    # features first (decode + frozen backbones, once per clip), then the engine's own events
    assert kinds[:16] == ["features"] * 16 and events[15]["done"] == 16 and events[15]["cached"] == 0
    assert kinds[16] == "run_started" and kinds[-1] == "run_finished" and kinds.count("epoch") == 40
    started = events[16]
    assert started["train_clips"] == 12 and started["val_clips"] == 4 and started["class_transfer"] is None
    summary = json.loads((run / "summary.json").read_text())
    # chance is 0.5; frozen I3D features separate these classes completely
    assert summary["val_top1"] == 1.0, summary
    assert len(list((run / "features").glob("*.safetensors"))) == 16
    assert (run / "last" / "training_state.pt").is_file()

    # --resume continues from last/ with more epochs; every feature comes from the cache
    assert main(["train", "--out", str(run), "--resume", "--epochs", "45", "--events", "-"]) == 0
    again = _events(capsys.readouterr().out)
    started = next(e for e in again if e["event"] == "run_started")
    assert started["resumed"] and started["start_epoch"] == 40
    assert [e["cached"] for e in again if e["event"] == "features"][-1] == 16
    assert [e["epoch"] for e in again if e["event"] == "epoch"] == [40, 41, 42, 43, 44]

    # the older spelling of the same run prints its summary
    assert main(["pretrained", "finetune", "--data", str(two_class_data), "--out", str(run), "--resume",
                 "--epochs", "46", "--val-fraction", "0.25", "--device", "cpu"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["val_top1"] == 1.0

    assert main(["predict", str(two_class_data / "moving texture" / "7.mp4"), "--model", str(run / "best"),
                 "--json", "--threads", "2"]) == 0  # fmt: skip
    row = json.loads(capsys.readouterr().out.strip())
    assert row["top"][0]["label"] == "moving texture" and len(row["top"]) == 2
    assert 0.0 <= row["audio"]["relevance"] <= 1.0  # the learned net's probability


@pytest.mark.slow
def test_ctrl_c_during_features_stops_with_130_and_resume_finishes(two_class_data, tmp_path, capsys):
    import signal
    import subprocess
    import sys

    if not kinetics400_installed():
        pytest.fail("kinetics400 is not built: run bash scripts/setup.sh --dev")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "imd_core", "train", "--data", str(two_class_data), "--out", str(run),
           "--set", "init.from_model=kinetics400", "--epochs", "3", "--device", "cpu", "--events", "-"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if '"features"' in line and json.loads(line)["done"] >= 2:
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    last = _events(out)[-1]
    assert last["event"] == "run_finished" and last["stopped"] is True and last["outcome"] == "interrupted"
    assert "Traceback" not in err

    from imd_core.cli.main import main

    assert main(["train", "--out", str(run), "--resume", "--events", "-"]) == 0
    events = _events(capsys.readouterr().out)
    assert [e for e in events if e["event"] == "features"][-1]["cached"] >= 2  # kept from the stopped attempt
    assert events[-1]["event"] == "run_finished" and events[-1]["outcome"] == "completed"


@pytest.mark.slow
def test_unfrozen_video_backbone_trains_and_is_saved(two_class_data, tmp_path, capsys):
    """``finetune.unfreeze=video`` (the GPU option), shrunk to 8 frames of 112 px for a CPU."""
    import torch
    from safetensors.torch import load_file

    from imd_core.cli.main import main
    from imd_core.resources import kinetics400_dir

    if not kinetics400_installed():
        pytest.fail("kinetics400 is not built: run bash scripts/setup.sh --dev")
    base = tmp_path / "small_k400"
    base.mkdir()
    for f in kinetics400_dir().iterdir():
        if f.name != "config.json":
            (base / f.name).symlink_to(f)
    config = json.loads((kinetics400_dir() / "config.json").read_text())
    config["model"].update(num_frames=8, image_size=112)
    (base / "config.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    assert main(["train", "--data", str(two_class_data), "--out", str(run), "--set", f"init.from_model={base}",
                 "finetune.unfreeze=video", "finetune.backbone_lr=1e-3", "finetune.val_fraction=0.25",
                 "--epochs", "2", "--batch-size", "6", "--device", "cpu", "--events", "-"]) == 0  # fmt: skip
    capsys.readouterr()
    before = load_file(str(kinetics400_dir() / "model.safetensors"))
    after = load_file(str(run / "best" / "model.safetensors"))
    name = "video.Conv3d_1a_7x7.conv.weight"
    assert name in after and not torch.equal(before[name], after[name])  # I3D itself was trained
    tagger = next(k for k in before if k.startswith("tagger."))
    assert torch.equal(before[tagger], after[tagger])  # YAMNet stays frozen


def test_train_set_keys_map_onto_finetune_options_and_others_are_refused():
    from imd_core.errors import ConfigError
    from imd_core.pretrained.finetune import FinetuneOptions, options_from_overrides

    o = options_from_overrides(FinetuneOptions(), ["optim.lr=0.01", "init.from_model=/x", "finetune.unfreeze=video",
                                                   "model.relevance_loss_weight=2", "epochs=3"])  # fmt: skip
    assert (o.lr, o.base, o.unfreeze, o.relevance_weight, o.epochs) == (0.01, "/x", "video", 2.0, 3)
    with pytest.raises(ConfigError, match="valid keys are"):
        options_from_overrides(FinetuneOptions(), ["model.depth=4"])
    with pytest.raises(ConfigError):
        options_from_overrides(FinetuneOptions(), ["finetune.unfreeze=audio"])


def test_imd_train_refuses_a_recipe_with_a_pretrained_start(tmp_path, capsys):
    from imd_core.cli.main import main

    code = main(["train", "--config", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--set", "init.from_model=kinetics400"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "leave --config out" in err and "Traceback" not in err


def test_feature_head_drops_irrelevant_audio_completely():
    import torch

    from imd_core.pretrained.feature_head import FeatureHead

    head = FeatureHead(3).eval()
    v, a = torch.randn(4, 1024), torch.randn(4, 1024)
    present = torch.tensor([True, True, False, True])
    logits, _, gate = head(v, a, present, gate=torch.tensor([1.0, 0.0, 1.0, 0.0]))
    video_only = head.video_head(v)
    assert gate.tolist() == [1.0, 0.0, 0.0, 0.0]  # no audio -> dropped whatever the teacher says
    assert torch.equal(logits[1:], video_only[1:]) and not torch.equal(logits[0], video_only[0])
