import csv
import dataclasses
import io
import json

import numpy as np
import pytest
import torch

from imd_core.inference.inputs import WindowInput
from imd_core.inference.results import (
    NO_AUDIO,
    AudioResult,
    LabelScore,
    WindowResult,
    csv_header,
    result_from_json_dict,
    window_results,
)
from imd_core.model.imd_model import Prediction


def _result(audio: AudioResult) -> WindowResult:
    top = tuple(LabelScore(f"class {i}", 0.5 / 2**i) for i in range(5))
    return WindowResult(path="a/b.mp4", start=0.0, end=2.5, top=top, audio=audio)


def test_json_has_exactly_the_documented_keys_in_order():
    tags = tuple(LabelScore(f"Tag{i}", 0.875 - i / 8) for i in range(5))
    r = _result(AudioResult(present=True, tags=tags, relevance=0.8, dropped=False, savld_iou=0.25))
    d = r.to_json_dict()
    assert list(d) == ["path", "start", "end", "top", "audio", "confident"]
    assert list(d["audio"]) == ["present", "tags", "relevance", "dropped", "savld_iou", "heard"]
    assert len(d["top"]) == 5 and set(d["top"][0]) == {"label", "score"}
    assert d["audio"]["tags"][0] == {"label": "Tag0", "score": 0.875}
    assert result_from_json_dict(json.loads(json.dumps(d))) == r


def test_no_audio_is_present_false_dropped_true_and_valid_json():
    r = _result(NO_AUDIO)
    d = json.loads(json.dumps(r.to_json_dict(), allow_nan=False))
    assert d["audio"] == {
        "present": False,
        "tags": [],
        "relevance": None,
        "dropped": True,
        "savld_iou": None,
        "heard": None,
    }
    assert "audio: none" in r.to_text()


def test_nan_scores_become_null_not_invalid_json():
    r = _result(AudioResult(present=True, tags=(), relevance=float("nan"), dropped=True, savld_iou=None))
    assert json.loads(json.dumps(r.to_json_dict(), allow_nan=False))["audio"]["relevance"] is None


def test_csv_row_matches_header_and_pads_missing_ranks():
    r = WindowResult(path="x,y.mp4", start=1.0, end=3.0, top=(LabelScore("only", 1.0),), audio=NO_AUDIO)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(csv_header())
    w.writerow(r.to_csv_row())
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(csv_header()) == 3 + 10 + 1 + 10 + 3 + 2
    assert rows[0]["path"] == "x,y.mp4" and rows[0]["top1_label"] == "only" and rows[0]["top2_label"] == ""
    assert rows[0]["audio_present"] == "false" and rows[0]["audio_dropped"] == "true"
    assert rows[0]["audio_relevance"] == ""


def test_no_confident_action_keeps_top_and_says_so():
    r = dataclasses.replace(_result(NO_AUDIO), confident=False)
    d = json.loads(json.dumps(r.to_json_dict()))
    assert d["confident"] is False and d["top"][0]["label"] == "class 0"
    assert r.to_text().split("  ")[1].startswith("no confident action (best: class 0")
    assert r.to_csv_row()[-1] == "false" and csv_header()[-1] == "confident"
    assert result_from_json_dict(d) == r


def test_window_results_convert_a_prediction_once_explanation_included():
    labels, tags = ["guitar", "wood", "laugh"], ["Speech", "Music", "Guitar", "Chop", "Silence"]
    t = torch.tensor
    p = Prediction(
        probs=t([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]),  # the 3rd clip: compile padding
        tag_probs=t([[0.1, 0.8, 0.6, 0.0, 0.05], [0.9, 0.0, 0.0, 0.1, 0.0], [0.0] * 5]),
        relevance=t([0.9, 0.2, 0.0]),
        audio_kept=t([True, False, False]),
        audio_present=t([True, True, False]),
        heard=t([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0] * 5]).bool(),
        savld_iou=t([1.0, 0.0, 0.0]),
        savld_labels=t([[0, 1, 1, 0, 0], [0] * 5, [0] * 5]).bool(),  # no SAVLD labels for "wood"
        confident=t([True, False, True]),
    )
    windows = [WindowInput(np.zeros((1, 2, 2, 3), np.uint8), None, f"{i}.mp4", i, i + 2.0) for i in range(2)]
    a, b = window_results(p, windows, labels, tags, k=2)
    assert (a.path, a.start, a.end, a.label, b.label) == ("0.mp4", 0.0, 2.0, "guitar", "wood")
    assert [x.label for x in a.top] == ["guitar", "wood"] and a.scores == pytest.approx((0.7, 0.2, 0.1))
    assert a.audio.tags == (LabelScore("Music", pytest.approx(0.8)), LabelScore("Guitar", pytest.approx(0.6)))
    assert (a.audio.heard, a.audio.savld_labels, a.audio.dropped) == (
        ("Music", "Guitar"),
        ("Music", "Guitar"),
        False,
    )
    assert b.audio.savld_labels is None and b.audio.dropped and not b.confident
    assert (
        a.audio_reason(0.5)
        == "tags Music, Guitar: match SAVLD(guitar) on Guitar, Music (IoU 1.00); relevance 0.90 >= 0.50"
    )
    assert b.audio_reason(0.5) == "tags Speech: SAVLD has no entry for 'wood'; relevance 0.20 < 0.50"
    assert "savld_labels" not in json.dumps(a.to_json_dict())  # not part of the output formats
    no_sound = dataclasses.replace(p, audio_present=t([False, False, False]))
    assert window_results(no_sound, windows[:1], labels, tags)[0].audio == NO_AUDIO
