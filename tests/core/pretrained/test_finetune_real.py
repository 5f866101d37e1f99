"""Fine-tuning kinetics400 through ``imd train`` on real footage (the real test set,
docs/REAL_SET.md), held out by time: it must name held-out moments far above chance.

Seven classes from seven real recordings (a pianist, a dancer, a woman crying and then
laughing, parkour, pedestrians, a cup), every audio variant of each (own, foreign, none,
silent). Training sees the first 3.84 s of each clip, validation the next 3.84 s: other
moments of the same footage, never a frame of training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imd_core.resources import kinetics400_installed
from tests.scripts import import_script

REAL_SET = Path(os.environ.get("IMD_REAL_SET", Path(__file__).resolve().parents[3] / ".weights" / "real_set"))
PROTOCOL = import_script("eval_finetune_relevance")  # the classes and windows, one copy
CHANCE = 1 / len(PROTOCOL.CLASSES)


@pytest.fixture(scope="module")
def real_manifest(tmp_path_factory) -> Path:
    if not (REAL_SET / "manifest.csv").is_file():
        pytest.fail(f"{REAL_SET} is missing: run `bash scripts/setup.sh --dev` (it builds the real test set)")
    if not kinetics400_installed():
        pytest.fail("kinetics400 is not built: run `bash scripts/setup.sh --dev`")
    manifest = tmp_path_factory.mktemp("real") / "manifest.csv"
    PROTOCOL.write_manifest(REAL_SET, manifest)
    return manifest


@pytest.mark.slow
def test_imd_train_from_kinetics400_names_held_out_real_moments(real_manifest, tmp_path, capsys):
    from imd_core.cli.main import main

    run = tmp_path / "run"
    code = main(["train", "--data", str(real_manifest), "--out", str(run), "--set", "init.from_model=kinetics400",
                 "finetune.seed=0", "--epochs", "80", "--device", "cpu", "--events", "-"])  # fmt: skip
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    started = next(e for e in events if e["event"] == "run_started")
    assert started["val_clips"] == 21 and started["train_clips"] == 21, started
    # Kinetics-400 names start from I3D's own classifier rows; the others are new
    assert set(started["class_transfer"]["kept"]) == {"playing piano", "dancing ballet", "crying", "laughing",
                                                      "parkour"}  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    # Margin: at least 4x chance (1/7) on moments never seen in training. Measured 2026-12-07:
    # see docs/RESULTS.md ("Fine-tuning on real clips").
    assert summary["val_top1"] >= 4 * CHANCE, summary
    assert (run / "best" / "model.safetensors").is_file()
