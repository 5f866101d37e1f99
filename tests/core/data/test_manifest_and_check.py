"""Dataset indexes (folders, CSV, JSONL), splits, `check_dataset` and `imd data check`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from imd_core.data.check import check_dataset
from imd_core.data.manifest import load_dataset_index
from imd_core.errors import DataError
from tests.media_factory import write_broken, write_clip


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """DATA/<class>/ with good clips, one without audio and two broken files."""
    root = tmp_path_factory.mktemp("tree")
    (root / "Playing Guitar").mkdir()
    (root / "drumming").mkdir()
    write_clip(root / "Playing Guitar" / "g1.mp4", 1.0)
    write_clip(root / "Playing Guitar" / "g 2 é.webm", 1.0)
    write_clip(root / "drumming" / "d1.avi", 1.0)
    write_clip(root / "drumming" / "silent.mp4", 1.0, audio_hz=None)
    write_broken(root / "drumming" / "empty.mp4", "empty")
    write_broken(root / "drumming" / "cut.mkv", "truncated-stream")
    (root / "drumming" / "notes.txt").write_text("not a clip")  # ignored: not a media extension
    return root


def test_folder_tree_index(tree):
    index = load_dataset_index(tree)
    assert index.layout == "folders"
    assert index.labels == ("drumming", "Playing Guitar")
    assert index.class_counts() == {"drumming": 4, "Playing Guitar": 2}
    assert all(e.path.startswith(str(tree)) for e in index.entries)
    assert sum(index.split_counts().values()) == 6


def test_split_folders(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                (tmp_path / split / cls / f"{i}.mp4").write_bytes(b"x")
    index = load_dataset_index(tmp_path)
    assert index.split_counts() == {"train": 6, "val": 2, "test": 0}
    assert len(index.split("val")) == 2 and index.split("val").labels == ("a", "b")


def test_csv_manifest_relative_paths_case_insensitive_labels_and_windows(tmp_path):
    (tmp_path / "clips").mkdir()
    rows = [
        "path,label,start,end,split,extra",
        "clips/a.mp4,Guitar,0,2.5,train,x",
        "clips/b.mp4,guitar,1.0,,val,y",
        f"{tmp_path / 'clips' / 'c.mp4'},DRUMS,,,test,z",
    ]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    for index in (load_dataset_index(manifest), load_dataset_index(tmp_path)):
        assert index.layout == "csv" and index.labels == ("DRUMS", "Guitar")
        a, b, c = index.entries
        assert a.path == str(tmp_path / "clips" / "a.mp4") and (a.start, a.end, a.split) == (
            0.0,
            2.5,
            "train",
        )
        assert b.label == "Guitar" and (b.start, b.end, b.split) == (1.0, None, "val")
        assert c.label_index == 0 and c.split == "test"
    given = load_dataset_index(manifest, labels=["guitar", "drums", "piano"])
    assert given.labels == ("guitar", "drums", "piano") and given.entries[2].label == "drums"
    with pytest.raises(DataError, match="not one of"):
        load_dataset_index(manifest, labels=["piano"])


def test_jsonl_manifest_and_errors(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"path": "x.mp4", "label": "a"}\n\n{"path": "y.mp4", "label": "b", "split": "valid"}\n')
    index = load_dataset_index(m)
    assert index.layout == "jsonl" and [e.split for e in index.entries][1] == "val"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x.mp4"}\n')
    with pytest.raises(DataError, match="needs both"):
        load_dataset_index(bad)
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match="not valid JSON"):
        load_dataset_index(bad)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("path,label,start,end\nx.mp4,a,2,1\n")
    with pytest.raises(DataError, match="after start"):
        load_dataset_index(bad_csv)
    bad_csv.write_text("path,label,split\nx.mp4,a,holdout\n")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset_index(bad_csv)
    with pytest.raises(DataError, match="not found"):
        load_dataset_index(tmp_path / "nope")


def test_seeded_ratio_split_is_stable_and_stratified(tmp_path):
    lines = ["path,label"] + [f"{c}{i}.mp4,{c}" for c in "ab" for i in range(20)]
    m = tmp_path / "m.csv"
    m.write_text("\n".join(lines))
    one, two = load_dataset_index(m, seed=3), load_dataset_index(m, seed=3)
    assert [e.split for e in one.entries] == [e.split for e in two.entries]
    other = load_dataset_index(m, seed=4)
    assert [e.split for e in one.entries] != [e.split for e in other.entries]
    for label in "ab":
        splits = [e.split for e in one.entries if e.label == label]
        assert (splits.count("train"), splits.count("val"), splits.count("test")) == (16, 2, 2)


def test_check_dataset_reports_each_file(tree):
    report = check_dataset(tree)
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in report.files}
    assert by_name["g1.mp4"].status == "ok" and by_name["g1.mp4"].duration == pytest.approx(1.0, abs=0.05)
    assert by_name["g 2 é.webm"].status == "ok"
    assert by_name["d1.avi"].status == "ok" and by_name["d1.avi"].audio_codec == "pcm_s16le"
    assert by_name["silent.mp4"].status == "no-audio"
    assert by_name["empty.mp4"].status == "error" and "empty" in by_name["empty.mp4"].reason
    assert by_name["cut.mkv"].status == "error" and "truncated" in by_name["cut.mkv"].reason
    assert not report.usable and report.counts == {"ok": 3, "no-audio": 1, "error": 2}
    classes = report.classes()
    assert classes["drumming"]["error"] == 2 and classes["Playing Guitar"]["seconds"] == pytest.approx(
        2.0, abs=0.1
    )


def _imd(*args):
    return subprocess.run(
        [sys.executable, "-m", "imd_core", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_cli_data_check_exit_codes_and_json(tree, tmp_path, capsys):
    # One real process for the exit code and streams, the other cases in-process (faster).
    out = _imd("data", "check", str(tree), "--json")
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    assert report["counts"] == {"ok": 3, "no-audio": 1, "error": 2}
    assert "empty.mp4: file is empty" in out.stderr and "cut.mkv" in out.stderr

    from imd_core.cli.main import main

    good = tmp_path / "good"
    (good / "x").mkdir(parents=True)
    write_clip(good / "x" / "a.mp4", 0.5)
    write_clip(good / "x" / "b.mp4", 0.5, audio_hz=None)
    assert main(["data", "check", str(good)]) == 0
    printed = capsys.readouterr().out
    assert "a.mp4" in printed and "no-audio" in printed and "2 files" in printed

    assert main(["data", "check", str(tmp_path / "missing")]) == 3
    assert "not found" in capsys.readouterr().err


def test_check_windows_audio_only_files_and_worker_processes(tmp_path):
    write_clip(tmp_path / "a.mp4", 1.0)
    write_clip(tmp_path / "sound.m4a", 1.0, video=False)
    rows = ["path,label,start,end", "a.mp4,x,0.2,0.8", "a.mp4,x,3.0,4.0", "sound.m4a,y,,"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    report = check_dataset(tmp_path / "m.csv", workers=2)
    inside, outside, audio_only = sorted(report.files, key=lambda f: (f.path, f.reason or ""))
    assert inside.status == "ok" and inside.duration == pytest.approx(0.6)
    assert outside.status == "error" and "after the video ends" in outside.reason
    assert audio_only.status == "error" and audio_only.reason == "no video stream"


@pytest.mark.parametrize("form", ["plain", "./plain", "../work/plain", "lists/m.csv"])
def test_every_relative_dataset_form_finds_the_files(tmp_path, monkeypatch, form):
    """A relative folder used to be joined twice (`plain/plain/cls_a/a.mp4: file not found`)."""
    root = tmp_path / "work"
    for cls in ("cls_a", "cls_b"):
        (root / "plain" / cls).mkdir(parents=True)
        write_clip(root / "plain" / cls / "a.mp4", seconds=0.5)
    (root / "lists").mkdir()
    (root / "lists" / "m.csv").write_text(
        "path,label\n../plain/cls_a/a.mp4,cls_a\n../plain/cls_b/a.mp4,cls_b\n"
    )
    monkeypatch.chdir(root)
    index = load_dataset_index(form)
    assert [e.path for e in index.entries] == [str(root / "plain" / c / "a.mp4") for c in ("cls_a", "cls_b")]
    report = check_dataset(form)
    assert report.counts["ok"] == 2, report
