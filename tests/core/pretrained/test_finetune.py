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


@pytest.mark.slow
def test_finetune_learns_two_classes_and_saves_a_loadable_folder(two_class_data, tmp_path, capsys):
    if not kinetics400_installed():
        pytest.fail("kinetics400 is not built: run bash scripts/setup.sh --dev")
    from imd_core.cli.main import main

    run = tmp_path / "run"
    argv = ["pretrained", "finetune", "--data", str(two_class_data), "--out", str(run), "--epochs", "40",
            "--val-fraction", "0.25", "--threads", "2"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train_clips"] == 12 and summary["val_clips"] == 4
    # chance is 0.5; frozen I3D features separate these classes completely
    assert summary["val_top1"] == 1.0, summary
    assert len(list((run / "features").glob("*.safetensors"))) == 16
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    # a second run reuses every cached feature (no decode): same result
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["val_top1"] == 1.0

    assert main(["predict", str(two_class_data / "moving texture" / "7.mp4"), "--model", str(run / "best"),
                 "--json", "--threads", "2"]) == 0  # fmt: skip
    row = json.loads(capsys.readouterr().out.strip())
    assert row["top"][0]["label"] == "moving texture" and len(row["top"]) == 2
    assert 0.0 <= row["audio"]["relevance"] <= 1.0  # the learned net's probability


def test_feature_head_drops_irrelevant_audio_completely():
    import torch

    from imd_core.pretrained.finetune import FeatureHead

    head = FeatureHead(3).eval()
    v, a = torch.randn(4, 1024), torch.randn(4, 1024)
    present = torch.tensor([True, True, False, True])
    logits, _, gate = head(v, a, present, gate=torch.tensor([1.0, 0.0, 1.0, 0.0]))
    video_only = head.video_head(v)
    assert gate.tolist() == [1.0, 0.0, 0.0, 0.0]  # no audio -> dropped whatever the teacher says
    assert torch.equal(logits[1:], video_only[1:]) and not torch.equal(logits[0], video_only[0])
