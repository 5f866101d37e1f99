import json
from pathlib import Path

import pytest
import torch

from imd_core.cli.main import main
from imd_core.errors import CheckpointError
from imd_core.model.savld import Savld, content_words, lexical_overlap, relevance_iou, set_iou, top_k_sets

LABELS_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "labels"
REPO = Path(__file__).resolve().parents[3]


def test_build_with_a_bert_style_encoder(bert_folder, tmp_path):
    video = ["Playing Guitar", "dog barking"]
    audio = ["Guitar", "Acoustic guitar", "Bark", "Dog", "Engine", "Speech"]
    for pooling in ("mean", "cls"):
        s = Savld.build(video, audio, encoder=str(bert_folder), pooling=pooling, k=3)
        assert s.k == 3 and s.pooling == pooling and s.encoder == str(bert_folder)
        assert list(s.mapping) == video
        for entries in s.mapping.values():
            assert len(entries) == 3 and all(e["label"] in audio for e in entries)
            scores = [e["score"] for e in entries]
            assert scores == sorted(scores, reverse=True)
    # lowercasing: the same label in another case maps identically
    a = Savld.build(["PLAYING GUITAR"], audio, encoder=str(bert_folder), k=6)
    b = Savld.build(["playing guitar"], audio, encoder=str(bert_folder), k=6)
    assert [e["label"] for e in a.mapping["PLAYING GUITAR"]] == [
        e["label"] for e in b.mapping["playing guitar"]
    ]
    # lexical overlap puts the label sharing a word first
    lex = Savld.build(["dog barking"], audio, encoder=str(bert_folder), k=2, lexical_weight=5.0)
    assert lex.mapping["dog barking"][0]["label"] in ("Dog", "Bark")
    # JSON round trip
    s.save(tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())
    assert set(data) == {"encoder", "pooling", "k", "video_labels", "audio_labels", "mapping"}
    assert Savld.load(tmp_path / "s.json") == s
    with pytest.raises(CheckpointError, match="imd savld build"):
        Savld.from_dict({"mapping": {}})


def test_matrix_and_relevance_iou():
    s = Savld(
        "x",
        "mean",
        2,
        ["guitar", "dog"],
        ["Music", "Guitar", "Dog", "Wind"],
        {
            "guitar": [{"label": "Guitar", "score": 1.0}, {"label": "music", "score": 0.5}],
            "dog": [{"label": "Dog", "score": 1.0}, {"label": "Wind", "score": 0.1}],
        },
    )
    m = s.matrix(["guitar", "dog", "cat"], ["Music", "Guitar", "Dog", "Wind"])
    assert m.tolist() == [
        [True, True, False, False],
        [False, False, True, True],
        [False, False, False, False],
    ]
    logits = torch.tensor(
        [
            [5.0, 4.0, 0.0, -1.0],  # tags {Music, Guitar}
            [0.0, -1.0, 5.0, -2.0],
        ]
    )  # tags {Dog, Music}
    assert top_k_sets(logits, 2).tolist() == [[True, True, False, False], [True, False, True, False]]
    iou = relevance_iou(logits, torch.tensor([0, 1]), m, top_k=2)
    assert torch.allclose(iou, torch.tensor([1.0, 1 / 3]))
    assert relevance_iou(logits, torch.tensor([2, 2]), m, top_k=2).tolist() == [0.0, 0.0]
    empty = torch.zeros(1, 4, dtype=torch.bool)
    assert set_iou(empty, empty).tolist() == [0.0]


def test_relevance_iou_tag_floor_drops_tags_not_above_it():
    m = torch.tensor([[True, True, False, False], [False, False, True, False]])
    # clip 0: "Wind" (the floor, index 3) ranks first, the action's tag second: silence
    # clip 1: the action's tag ranks above the floor: heard
    logits = torch.tensor([[1.0, -3.0, -4.0, 6.0], [0.0, -1.0, 5.0, 2.0]])
    labels = torch.tensor([0, 1])
    assert relevance_iou(logits, labels, m, top_k=2).tolist() == [pytest.approx(1 / 3), 0.5]
    assert relevance_iou(logits, labels, m, top_k=2, floor=3).tolist() == [0.0, 1.0]


def test_content_words_and_overlap():
    assert content_words("playing drums") == {"drum"}
    assert content_words("Drum") == {"drum"}
    assert lexical_overlap(["playing drums", "tickling"], ["Drum", "Tick"]).tolist() == [
        [1.0, 0.0],
        [0.0, 0.0],
    ]


def test_savld_build_cli(bert_folder, tmp_path, capsys):
    (tmp_path / "video.txt").write_text("playing guitar\ndog barking\n\n")
    (tmp_path / "audio.csv").write_text(
        'index,mid,display_name\n0,/m/1,"Guitar"\n1,/m/2,"Bark"\n2,/m/3,"Engine, motor"\n'
    )
    code = main(
        [
            "savld",
            "build",
            "--video-labels",
            str(tmp_path / "video.txt"),
            "--audio-labels",
            str(tmp_path / "audio.csv"),
            "--encoder",
            str(bert_folder),
            "--pooling",
            "mean",
            "--k",
            "2",
            "--out",
            str(tmp_path / "s.json"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["video_labels"] == ["playing guitar", "dog barking"]
    assert data["audio_labels"] == ["Guitar", "Bark", "Engine, motor"]  # spelled as given
    assert data["k"] == 2 and data["pooling"] == "mean" and len(data["mapping"]["dog barking"]) == 2
    code = main(
        [
            "savld",
            "build",
            "--video-labels",
            str(tmp_path / "nope.txt"),
            "--audio-labels",
            str(tmp_path / "audio.csv"),
            "--out",
            str(tmp_path / "x.json"),
        ]
    )
    assert code == 3 and "cannot read label file" in capsys.readouterr().err


@pytest.mark.skipif(not LABELS_DIR.is_dir(), reason="shared label lists not available")
def test_default_encoder_on_kinetics_sounds_relevance_set():
    """The offline default (all-MiniLM-L6-v2, our default options) on the hand-built set."""
    import csv

    relevant = json.loads((REPO / "bench" / "savld_relevance_ks.json").read_text())["relevant"]
    video = [x.strip() for x in (LABELS_DIR / "kinetics_sounds.txt").read_text().splitlines() if x.strip()]
    with open(LABELS_DIR / "audioset_527.csv", newline="") as fh:
        audio = [r["display_name"] for r in csv.DictReader(fh)]
    s = Savld.build(video, audio)  # no encoder: the packaged MiniLM
    top5 = sum(any(e["label"] in relevant[v] for e in s.mapping[v][:5]) for v in video) / len(video)
    top1 = sum(s.mapping[v][0]["label"] in relevant[v] for v in video) / len(video)
    assert top5 >= 0.9 and top1 >= 0.75, (top1, top5)
    assert s.mapping["playing bagpipes"][0]["label"] == "Bagpipes"
