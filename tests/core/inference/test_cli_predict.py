"""`imd predict` end to end: formats, exit codes, error lines, the demo-model default, torchrun."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from imd_core.cli.main import main
from imd_core.inference.results import csv_header


def test_json_lines_for_a_folder_with_a_bad_file(tiny_model_dir, media_dir, capsys):
    code = main(["predict", str(media_dir), "--model", str(tiny_model_dir), "--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 3
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(media_dir / "a.mp4"), str(media_dir / "sub" / "b.mp4")]
    assert list(rows[0]) == ["path", "start", "end", "top", "audio", "confident", "warnings"]
    assert len(rows[0]["top"]) == 5 and rows[0]["warnings"] == []
    assert rows[1]["audio"]["present"] is False and rows[1]["audio"]["dropped"] is True
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{media_dir / 'broken.mp4'}: ")


def test_csv_windows_and_text_default(tiny_model_dir, media_dir, capsys):
    a = str(media_dir / "a.mp4")
    assert main(["predict", a, "--model", str(tiny_model_dir), "--csv", "--window", "1"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == csv_header() and len(rows) == 4 and err == ""
    assert [r[1:3] for r in rows[1:]] == [["0.0", "1.0"], ["1.0", "2.0"], ["2.0", "3.0"]]
    assert main(["predict", a, "--model", str(tiny_model_dir), "--window", "2", "--hop", "1"]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 2 and "[1.00-3.00s]" in out and "audio:" in out


def test_decode_workers_change_nothing_but_speed(tiny_model_dir, media_dir, tmp_path, capsys):
    for i in range(3):
        shutil.copy(media_dir / "a.mp4", tmp_path / f"c{i}.mp4")
    (tmp_path / "c1b.mp4").write_bytes(b"not a video")  # sorted between c1 and c2
    base = ["predict", str(tmp_path), str(media_dir / "sub" / "b.mp4"), "--model", str(tiny_model_dir)]
    base += ["--json", "--window", "1"]
    runs = []
    for workers in ("0", "3"):
        code = main([*base, "--decode-workers", workers])
        out, err = capsys.readouterr()
        runs.append((code, [json.loads(line) for line in out.splitlines()], err.strip().splitlines()))
    (code0, rows0, err0), (code3, rows3, err3) = runs
    assert code0 == code3 == 3 and err0 == err3 == [f"{tmp_path / 'c1b.mp4'}: " + err0[0].split(": ", 1)[1]]
    names = [os.path.basename(r["path"]) for r in rows3]
    assert names == ["c0.mp4"] * 3 + ["c1.mp4"] * 3 + ["c2.mp4"] * 3 + ["b.mp4"] * 2  # input order
    assert [(r["path"], r["start"], r["top"][0]["label"]) for r in rows3] == [
        (r["path"], r["start"], r["top"][0]["label"]) for r in rows0
    ]
    for a, b in zip(rows3, rows0, strict=True):
        assert a["top"][0]["score"] == pytest.approx(b["top"][0]["score"], abs=1e-5)
    assert main([*base, "--decode-workers", "-1"]) == 2 and "--decode-workers" in capsys.readouterr().err


def test_bad_window_is_a_usage_error(tiny_model_dir, media_dir, capsys):
    assert main(["predict", str(media_dir / "a.mp4"), "--model", str(tiny_model_dir), "--window", "0"]) == 2
    assert "--window" in capsys.readouterr().err


def _imd(*args, env=None, timeout=180):
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "imd_core", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_demo_model_default_and_no_traceback(tiny_model_dir, media_dir, tmp_path):
    res = tmp_path / "resources"
    shutil.copytree(tiny_model_dir, res / "demo_model")
    missing = str(tmp_path / "nope.mp4")
    out = _imd(
        "predict", str(media_dir / "sub" / "b.mp4"), missing, "--json", env={"IMD_RESOURCES": str(res)}
    )
    assert out.returncode == 3, out.stderr
    assert len(out.stdout.splitlines()) == 1 and json.loads(out.stdout)["audio"]["present"] is False
    assert out.stderr.strip() == f"{missing}: no such file or folder"
    out = _imd("predict", str(media_dir / "a.mp4"), env={"IMD_RESOURCES": str(tmp_path / "empty")})
    assert out.returncode == 1 and "Traceback" not in out.stderr and "--model" in out.stderr


@pytest.mark.slow
def test_torchrun_two_cpu_processes_merge_in_input_order(tiny_model_dir, media_dir, tmp_path, capsys):
    for i in range(3):  # distinct files (a path given twice is processed once)
        shutil.copy(media_dir / "a.mp4", tmp_path / f"c{i}.mp4")
    inputs = [str(media_dir / "a.mp4"), str(media_dir / "sub" / "b.mp4")] + [
        str(tmp_path / f"c{i}.mp4") for i in range(3)
    ]
    args = [
        "predict",
        *inputs,
        "--model",
        str(tiny_model_dir),
        "--json",
        "--device",
        "cpu",
        "--window",
        "1.5",
    ]
    assert main(args) == 0
    want = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "imd_core",
        "-v",
    ]
    dist = subprocess.run(
        cmd + args, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert dist.returncode == 0, dist.stderr
    assert "rank 0 of 2" in dist.stderr and "rank 1 of 2" in dist.stderr
    got = [json.loads(line) for line in dist.stdout.splitlines()]
    assert [(g["path"], g["start"]) for g in got] == [(w["path"], w["start"]) for w in want]
    assert list(dict.fromkeys(g["path"] for g in got)) == inputs
    for g, w in zip(got, want, strict=True):
        assert g["top"][0]["label"] == w["top"][0]["label"]
        assert g["top"][0]["score"] == pytest.approx(w["top"][0]["score"], abs=1e-4)
        assert g["audio"]["present"] == w["audio"]["present"]


def test_progress_bar_keeps_error_lines_whole(tiny_model_dir, media_dir, capsys):
    code = main(["predict", str(media_dir), "--model", str(tiny_model_dir), "--progress", "-o", os.devnull])
    err = capsys.readouterr().err
    assert code == 3 and "/3" in err  # the bar counted the three files
    lines = [seg.strip() for line in err.split("\n") for seg in line.split("\r") if seg.strip()]
    assert any(seg.startswith(f"{media_dir / 'broken.mp4'}: ") for seg in lines)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_is_one_line_error(tiny_model_dir, media_dir, capsys):
    assert (
        main(["predict", str(media_dir / "a.mp4"), "--model", str(tiny_model_dir), "--device", "cuda"]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available" in err and "--device cpu" in err


def test_one_verdict_per_file_and_warnings_that_look_like_warnings(tiny_model_dir, tmp_path, capsys):
    """Issue 15 item 4: a PNG named .mp4 and a truncated file fail with the reason every front
    end gives; damaged packets print a result, a ``warning:`` line and a JSON ``warnings`` field."""
    from imd_core.media.verdict import media_problem  # noqa: F401 -- the one place the rules live
    from tests.media_factory import write_broken, write_damaged, write_still_image

    still = write_still_image(tmp_path / "photo.mp4")
    cut = write_broken(tmp_path / "cut.mp4", "truncated-stream")
    code = main(
        ["predict", str(still), str(cut), "--model", str(tiny_model_dir), "--json", "--device", "cpu"]
    )
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{still}: a still image (png picture), not a video")
    assert lines[1].startswith(f"{cut}: video data ends at ") and "truncated" in lines[1]

    damaged = write_damaged(tmp_path / "dmg.mp4")
    code = main(["predict", str(damaged), "--model", str(tiny_model_dir), "--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    (note,) = row["warnings"]
    assert note.endswith("damaged packets skipped")
    assert err.strip().splitlines() == [f"warning: {damaged}: {note}"]
