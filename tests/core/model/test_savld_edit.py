"""``imd savld show`` / ``imd savld set`` and the SAVLD fields behind them (runners-up, overrides)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from imd_core.cli.main import main
from imd_core.errors import CheckpointError, ConfigError
from imd_core.model.savld import Savld

REPO = Path(__file__).resolve().parents[3]
AUDIO = ["Guitar", "Acoustic guitar", "Bark", "Dog", "Engine, motor", "Speech"]


def _savld() -> Savld:
    mapping = {
        "playing guitar": [{"label": "Guitar", "score": 0.9}, {"label": "Speech", "score": 0.5}],
        "dog barking": [{"label": "Dog", "score": 0.8}, {"label": "Bark", "score": 0.7}],
    }
    runners = {
        "playing guitar": [{"label": "Acoustic guitar", "score": 0.4}],
        "dog barking": [{"label": "Speech", "score": 0.3}],
    }
    return Savld("enc", "cls", 2, list(mapping), list(AUDIO), mapping, runners)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return int(code or 0), out.out, out.err


def test_build_records_runners_up_only_when_asked(bert_folder, tmp_path):
    plain = Savld.build(["playing guitar"], AUDIO, encoder=str(bert_folder), k=2)
    assert plain.runners_up == {} and "runners_up" not in plain.to_dict()  # format unchanged by default
    s = Savld.build(["playing guitar", "dog barking"], AUDIO, encoder=str(bert_folder), k=2, runners_up=3)
    for v in s.video_labels:
        head, tail = s.mapping[v], s.runners_up[v]
        assert len(head) == 2 and len(tail) == 3
        assert not {e["label"] for e in head} & {e["label"] for e in tail}
        assert head[-1]["score"] >= tail[0]["score"]  # the runners-up continue the ranking
    # capped by the vocabulary
    few = Savld.build(["dog barking"], AUDIO, encoder=str(bert_folder), k=5, runners_up=10)
    assert len(few.runners_up["dog barking"]) == 1
    s.save(tmp_path / "s.json")
    assert Savld.load(tmp_path / "s.json") == s


def test_override_and_reset_in_memory():
    s = _savld()
    s.override("Playing Guitar", ["acoustic GUITAR", "Engine, motor"])  # case-insensitive names
    assert s.mapping["playing guitar"] == [
        {"label": "Acoustic guitar", "score": 1.0},
        {"label": "Engine, motor", "score": 1.0},
    ]
    assert s.overrides["playing guitar"]["previous"][0] == {"label": "Guitar", "score": 0.9}
    s.override("playing guitar", ["Dog"])  # a second override keeps the built entry as "previous"
    assert s.overrides["playing guitar"]["previous"][0]["label"] == "Guitar"
    assert Savld.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    s.reset("playing guitar")
    assert s == _savld()
    with pytest.raises(ConfigError, match="not overridden"):
        s.reset("playing guitar")
    with pytest.raises(ConfigError, match="unknown class 'playing gutar'.*did you mean 'playing guitar'"):
        s.override("playing gutar", ["Dog"])
    with pytest.raises(ConfigError, match="unknown audio label 'Barking'"):
        s.override("dog barking", ["Barking"])
    with pytest.raises(ConfigError, match="given twice"):
        s.override("dog barking", ["Dog", "dog"])
    with pytest.raises(ConfigError, match="no audio label"):
        s.override("dog barking", [])


def test_malformed_optional_fields_are_refused():
    good = _savld().to_dict()
    for key, value in (
        ("runners_up", {"dog barking": [{"label": "Dog"}]}),
        ("runners_up", []),
        ("overrides", {"dog barking": {"labels": "Dog"}}),
        ("overrides", {"dog barking": {"labels": ["Dog"], "previous": [{"label": 1, "score": 1}]}}),
        ("overrides", ["dog barking"]),
    ):
        with pytest.raises(CheckpointError, match="not a SAVLD file"):
            Savld.from_dict({**good, key: value})


def test_show_and_set_round_trip(tmp_path, capsys):
    path = tmp_path / "s.json"
    _savld().save(path)
    code, out, err = _run(["savld", "show", str(path)], capsys)
    assert code == 0, err
    assert "playing guitar" in out and "Guitar" in out and "0.9000" in out
    assert "runners-up: Acoustic guitar 0.400" in out and "OVERRIDDEN" not in out

    code, out, err = _run(
        ["savld", "set", str(path), "dog barking", "--labels", " Bark ; engine, motor"], capsys
    )
    assert code == 0, err
    assert "'dog barking' set to Bark; Engine, motor" in err
    data = json.loads(path.read_text())
    assert data["mapping"]["dog barking"] == [
        {"label": "Bark", "score": 1.0},
        {"label": "Engine, motor", "score": 1.0},
    ]
    assert data["overrides"]["dog barking"]["labels"] == ["Bark", "Engine, motor"]

    code, out, err = _run(["savld", "show", str(path), "dog barking"], capsys)
    assert code == 0 and "dog barking  [OVERRIDDEN" in out and "built entry: Dog 0.800, Bark 0.700" in out
    assert "playing guitar" not in out  # only the class asked for

    code, out, _ = _run(["savld", "show", str(path), "--json"], capsys)
    shown = json.loads(out)
    assert code == 0 and shown["overridden"] == ["dog barking"] and shown["k"] == 2
    by_class = {r["class"]: r for r in shown["classes"]}
    assert by_class["dog barking"]["override"]["previous"][0] == {"label": "Dog", "score": 0.8}
    assert by_class["playing guitar"]["override"] is None
    assert by_class["playing guitar"]["runners_up"] == [{"label": "Acoustic guitar", "score": 0.4}]

    # -o writes elsewhere and leaves the source alone; --reset restores the built entry
    before = path.read_bytes()
    code, _, err = _run(
        ["savld", "set", str(path), "dog barking", "--reset", "-o", str(tmp_path / "r.json")], capsys
    )
    assert code == 0, err
    assert path.read_bytes() == before
    assert Savld.load(tmp_path / "r.json") == _savld()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "{p}", "cat meowing", "--labels", "Dog"], "unknown class 'cat meowing'"),
        (
            ["set", "{p}", "dog barking", "--labels", "Barkk"],
            "unknown audio label 'Barkk'.*did you mean 'Bark'",
        ),
        (["set", "{p}", "dog barking", "--labels", ";"], "--labels is empty"),
        (["set", "{p}", "dog barking", "--labels", "Dog;;Bark"], "empty name"),
        (["set", "{p}", "dog barking"], "one of the arguments --labels --reset is required"),
        (["set", "{p}", "dog barking", "--reset"], "not overridden"),
        (["show", "{p}", "cat"], "unknown class 'cat'"),
        (["show", "{d}/missing.json"], "no such file or folder"),
        (["show", "{d}"], "holds no savld.json"),
        (["set", "{p}", "dog barking", "--labels", "Dog", "-o", "{d}/no/such/dir/x.json"], "--out"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, args, message):
    path = tmp_path / "s.json"
    _savld().save(path)
    before = path.read_bytes()
    argv = ["savld", *(a.format(p=path, d=tmp_path) for a in args)]
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert path.read_bytes() == before  # nothing written on an error


def test_a_broken_file_is_a_checkpoint_error(tmp_path, capsys):
    (tmp_path / "s.json").write_text('{"mapping": {}}')
    code, _, err = _run(["savld", "show", str(tmp_path / "s.json")], capsys)
    assert code == 1 and "not a SAVLD file" in err and len(err.strip().splitlines()) == 1


def test_set_inside_a_model_folder_keeps_it_loadable(tmp_path, capsys):
    from imd_core.model.checkpoint import load_model

    folder = tmp_path / "demo"
    shutil.copytree(REPO / "resources" / "demo_model", folder)
    savld = Savld.load(folder / "savld.json")
    video, audio = savld.video_labels[0], savld.audio_labels[-1]
    code, _, err = _run(["savld", "set", str(folder), video, "--labels", audio], capsys)
    assert code == 0, err
    model = load_model(folder)
    assert model.savld.mapping[video] == [{"label": audio, "score": 1.0}]
    assert video in model.savld.overrides
    row = model.savld_matrix[model.labels.index(video)]  # what the relevance rule uses
    assert row.sum() == 1 and bool(row[model.audio_labels.index(audio)])
    code, out, _ = _run(["savld", "show", str(folder), video], capsys)
    assert code == 0 and "OVERRIDDEN" in out
    # the shipped folder is untouched
    assert Savld.load(REPO / "resources" / "demo_model" / "savld.json") == savld


def test_build_cli_records_runners_up(bert_folder, tmp_path, capsys):
    (tmp_path / "v.txt").write_text("playing guitar\ndog barking\n")
    (tmp_path / "a.txt").write_text("\n".join(AUDIO) + "\n")
    argv = [
        "savld",
        "build",
        "--video-labels",
        str(tmp_path / "v.txt"),
        "--audio-labels",
        str(tmp_path / "a.txt"),
    ]
    argv += ["--encoder", str(bert_folder), "--k", "2", "--out", str(tmp_path / "s.json")]
    code, _, err = _run([*argv, "--runners-up", "2"], capsys)
    assert code == 0, err
    s = Savld.load(tmp_path / "s.json")
    assert all(len(s.runners_up[v]) == 2 for v in s.video_labels)
    code, _, err = _run([*argv, "--runners-up", "0"], capsys)
    assert code == 0 and "runners_up" not in json.loads((tmp_path / "s.json").read_text())
