"""``imd train`` learns: a small SynthAV task it must master, run through the real CLI.

Three visually and audibly distinct SynthAV actions (every clip's audio is its own
sound, no visual ambiguity), 36 training and 12 validation clips, a tiny IMD model
trained from scratch on top of the frozen demo tagger (``resources/demo_tagger``, the
SynthAV AST the demo model was built on). Chance is 1/3; the run must reach at least
0.9 validation top-1 (11 of 12 clips) and cut its training loss by more than half.

A run whose optimiser never steps stays near chance with a flat loss, and so fails
here: checked when this test was written by making ``AdamW.step`` a no-op in the
``imd train`` subprocess (a ``sitecustomize`` on ``PYTHONPATH``, which the subprocess
inherits): training loss 2.03 -> 2.01, val top-1 0.42. The real run: loss 1.62 -> 0.2,
val top-1 1.0 from the second epoch. 33 s on 2 CPU cores shared with other jobs (load
2.6; 45 s at load 5.6), most of it the subprocess importing torch and writing the
clips; the training itself takes about 10 s.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from imd_core.synth import CLASS_TAGS, TAGGER_LABELS
from imd_core.synth.generate import SynthConfig, generate
from imd_core.train.event_schema import check_record
from imd_core.train.events import read_events
from tests.core.train.conftest import tiny_model_section

ROOT = Path(__file__).resolve().parents[3]
TAGGER = ROOT / "resources" / "demo_tagger"
CLASSES = ("bouncing ball", "sawing", "ringing bell")
CHANCE = 1 / len(CLASSES)
MIN_VAL_TOP1 = 0.9  # 11 of 12 validation clips; chance is 0.33
MAX_LOSS_RATIO = 0.5  # last epoch's mean training loss <= half the first epoch's
EPOCHS = 6


def write_task(root: Path) -> Path:
    """48 clips (16 per class) and a manifest: every 4th clip of a class is validation."""
    cfg = SynthConfig(
        clips=48,
        relevance=1.0,
        ambiguity=0.0,
        seed=5,
        size=64,
        min_seconds=1.0,
        max_seconds=1.2,
        val_fraction=0.0,
        test_fraction=0.0,
        classes=CLASSES,
    )
    with open(generate(root, cfg, workers=1), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    seen = dict.fromkeys(CLASSES, 0)
    manifest = root / "task.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["path", "label", "split"])
        for r in rows:
            seen[r["label"]] += 1
            out.writerow([r["path"], r["label"], "val" if seen[r["label"]] % 4 == 0 else "train"])
    return manifest


def write_recipe(path: Path) -> Path:
    # SAVLD: each action's own sound (what SynthAV plays), so the relevance targets are right
    savld = path.with_name("savld.json")
    savld.write_text(json.dumps({
        "encoder": "hand-written (tests)", "pooling": "mean", "k": 1, "video_labels": list(CLASSES),
        "audio_labels": list(TAGGER_LABELS), "mapping": {c: [{"label": CLASS_TAGS[c], "score": 1.0}] for c in CLASSES},
    }), encoding="utf-8")  # fmt: skip
    model = {
        **tiny_model_section(),
        "ast_source": str(TAGGER),
        "ast_config": None,
        "audio_seconds": 2.56,
        "relevance_tag_floor": "Silence",
    }
    recipe = {
        "version": 1, "name": "learns", "model": model, "init": {"savld": str(savld)},
        "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
        "schedule": {"name": "cosine", "warmup_steps": 2},
        "epochs": EPOCHS, "batch_size": 8, "seed": 0, "early_stopping_patience": 0, "num_workers": 0,
        "log_every_steps": 1, "data": {"frame_cache": "auto", "probe_timeout": 0},
    }  # fmt: skip
    path.write_text(json.dumps(recipe, indent=1), encoding="utf-8")
    return path


def test_imd_train_masters_a_small_synthav_task(tmp_path):
    manifest = write_task(tmp_path / "data")
    recipe = write_recipe(tmp_path / "recipe.json")
    run = tmp_path / "run"
    # PYTHONPATH keeps what the caller set (e.g. a sitecustomize that breaks the optimiser)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "imd_core", "train", "--config", str(recipe), "--data", str(manifest),
                          "--out", str(run), "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    events = read_events(run / "events.jsonl")
    assert [p for e in events for p in check_record(e)] == []
    started = next(e for e in events if e["event"] == "run_started")
    assert started["classes"] == sorted(CLASSES) and (started["train_clips"], started["val_clips"]) == (
        36,
        12,
    )
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == EPOCHS
    first, last = epochs[0], epochs[-1]
    summary = [(e["train"]["loss"], e["val"]["top1"]) for e in epochs]
    # the training loss falls: the last epoch's mean is at most half the first's
    assert last["train"]["loss"] <= MAX_LOSS_RATIO * first["train"]["loss"], summary
    assert last["val"]["loss"] < first["val"]["loss"], summary
    # the task is mastered: validation top-1 far above chance (1/3) at the end of training
    assert last["val"]["top1"] >= MIN_VAL_TOP1 > CHANCE + 0.5, summary
