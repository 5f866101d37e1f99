"""The embedded demo model on fresh SynthAV clips, through the real inference path.

40 clips of a seed the model never saw (P = 0.3, so most soundtracks must be dropped)
are rendered, encoded to MP4, decoded and classified by ``imd_core.inference.Predictor``
loading ``resources/demo_model``: a broken generator, decoder, preprocessor, checkpoint
or relevance gate shows up here.

Thresholds (binomial arguments; the seed is fixed, so the test is deterministic, and
the thresholds say how much room a retrained model has):

* top-1 >= 0.6 on 40 clips. Chance is 1/8: a model at chance reaches 24/40 with
  probability < 1e-9. The demo model measured 0.9+ on 300 held-out clips (README), and
  at p = 0.9 falling below 24/40 has probability < 1e-5.
* drop rate on non-relevant clips (irrelevant, misleading, silent; about 28) >= 0.75. A
  gate that flips coins passes with probability about 0.006; at the measured 0.9+, it
  fails with probability < 0.01.
* keep rate on relevant clips (about 12) >= 0.5, so "always drop" cannot pass.
"""

from __future__ import annotations

from collections import Counter

import pytest

from imd_core.resources import demo_clips, demo_clips_dir, demo_model_dir
from imd_core.synth import ACTION_CLASSES, SynthConfig, generate

pytestmark = pytest.mark.slow


def _mb(folder) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def test_demo_resources_exist_and_fit_their_budgets():
    model = demo_model_dir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "savld.json"):
        assert (model / name).is_file(), f"{model / name} is missing: run scripts/build_demo.py"
    assert _mb(model) <= 30.0
    clips = demo_clips()
    assert len(clips) >= 4 and _mb(demo_clips_dir()) <= 10.0
    names = [p.stem for p in clips]
    assert any("_relevant" in n for n in names) and any("_irrelevant" in n for n in names), names


def test_demo_model_classifies_fresh_synthav_and_drops_irrelevant_audio(tmp_path):
    import csv

    from imd_core.inference import Predictor

    cfg = SynthConfig(clips=40, relevance=0.3, ambiguity=0.3, seed=20261127)
    manifest = generate(tmp_path / "fresh", cfg, workers=2)
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    predictor = Predictor(demo_model_dir(), device="cpu", threads=1)
    assert predictor.labels == list(ACTION_CLASSES)
    outcomes = list(predictor.predict_paths([tmp_path / "fresh" / r["path"] for r in rows]))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    correct, kept = Counter(), Counter()
    totals = Counter(r["audio_kind"] == "relevant" for r in rows)
    for row, outcome in zip(rows, outcomes, strict=True):
        result = outcome.results[0]
        correct[row["label"] == result.label] += 1
        kept[(row["audio_kind"] == "relevant", not result.audio.dropped)] += 1
    top1 = correct[True] / len(rows)
    drop_irrelevant = kept[(False, False)] / totals[False]
    keep_relevant = kept[(True, True)] / totals[True]
    assert top1 >= 0.6, f"top-1 {top1:.2f}"
    assert drop_irrelevant >= 0.75, f"drop rate on non-relevant audio {drop_irrelevant:.2f}"
    assert keep_relevant >= 0.5, f"keep rate on relevant audio {keep_relevant:.2f}"
