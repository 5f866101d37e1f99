"""``scripts/eval_finetune_relevance.py``: its manifest and its scoring, without a model."""

from __future__ import annotations

import csv

import pytest

from tests.scripts import import_script


@pytest.fixture(scope="module")
def script():
    return import_script("eval_finetune_relevance")


def _row(kind: str, relevant: str, learned: bool, correct: bool = True) -> dict:
    present = kind != "none"
    row = {"audio_kind": kind, "audio_present": present, "relevance_known": relevant != "",
           "true_relevant": relevant == "true", "learned_keep": learned, "rule_keep": False,
           "rule_true_class_keep": False, "zeroshot_keep": False}  # fmt: skip
    for g in ("learned", "rule", "keep_all", "drop_all"):
        row[f"correct_{g}"] = correct if g == "keep_all" else True
        row[f"p_true_{g}"] = 0.5
    return row


def test_summary_scores_known_relevance_and_counts_silence_as_irrelevant(script):
    rows = [_row("own", "true", True), _row("foreign", "false", False, correct=False),
            _row("silent", "", False), _row("none", "", False)]  # fmt: skip
    lines = script.summary(rows).splitlines()
    learned = next(line for line in lines if line.startswith("| learned gate"))
    keep = next(line for line in lines if line.startswith("| always keep"))
    drop = next(line for line in lines if line.startswith("| always drop"))
    # 2 windows of known relevance, 3 with a track (the silent one is not relevant)
    assert learned == "| learned gate (fine-tuned) | 2/2 | 3/3 | 1 |"
    assert keep == "| always keep | 1/2 | 1/3 | 3 |"
    assert drop == "| always drop | 1/2 | 2/3 | 0 |"
    assert "| keep_all | 3/4 | 2/3 | 0.500 |" in lines


def test_manifest_keeps_the_seven_recordings_and_their_windows(script, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    with open(real / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "audio_kind", "audio_relevant"])
        w.writeheader()
        w.writerows([{"path": "pianist_own.mp4", "audio_kind": "own", "audio_relevant": "true"},
                     {"path": "ood_noise_noise.mp4", "audio_kind": "foreign", "audio_relevant": ""}])  # fmt: skip
    clips = script.write_manifest(real, tmp_path / "m.csv")
    assert [c["path"] for c in clips] == ["pianist_own.mp4"]  # out-of-distribution clips are left out
    with open(tmp_path / "m.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["label"], r["start"], r["end"], r["split"]) for r in rows] == [
        ("playing piano", "0.0", "3.84", "train"),
        ("playing piano", "3.86", "7.7", "val"),
    ]
