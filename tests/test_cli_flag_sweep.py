"""Every numeric flag of every ``imd`` subcommand against 0, negatives, nan, inf and huge values.

The flags are discovered from the argparse parsers, so a new flag is swept without
touching this file (a new subcommand needs one line in ``BASE``: arguments that make it
stop cheaply, e.g. a missing model or data folder). Each case must end cleanly: exit
code 2 with one line (a usage or configuration error), or, for a value that is valid,
the command's own clean outcome; never a traceback and never a large allocation.
"""

from __future__ import annotations

import argparse
import json
import math
import resource

import pytest

from imd_core.cli.main import build_parser, main

# Arguments after which each command stops quickly on its own (nothing to read).
BASE: dict[tuple[str, ...], list[str]] = {
    ("synth",): ["synth", "{tmp}/synth", "--clips", "1", "--size", "32", "--workers", "1"],
    ("predict",): ["predict", "{tmp}/missing.mp4", "--model", "{tmp}/no_model"],
    ("data", "check"): ["data", "check", "{tmp}/no_data"],
    ("train",): ["train", "--out", "{tmp}/run", "--data", "{tmp}/no_data"],
    ("eval",): ["eval", "--model", "{tmp}/no_model", "--data", "{tmp}/no_data"],
    ("savld", "build"): [
        "savld", "build", "--video-labels", "{tmp}/v.txt", "--audio-labels", "{tmp}/a.txt", "--out", "{tmp}/s.json",
    ],
    ("model-info",): ["model-info", "--model", "{tmp}/no_model"],
    ("pretrained", "finetune"): [
        "pretrained", "finetune", "--data", "{tmp}/no_data", "--out", "{tmp}/ft", "--base", "{tmp}/no_model",
    ],
}  # fmt: skip
# Never valid for any numeric flag: refused with exit code 2.
ALWAYS_BAD = ("-1", "nan", "inf", "-inf", "1e30", "1000000000000")
VALUES = ("0", *ALWAYS_BAD)


def _numeric_flags(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numeric_flags(sub, (*path, name))
        elif action.option_strings and (action.type in (int, float) or hasattr(action.type, "bounds")):
            yield path, max(action.option_strings, key=len)


FLAGS = sorted(set(_numeric_flags(build_parser())))


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return int(code or 0), capsys.readouterr().err


def test_the_sweep_finds_the_flags_and_every_command_has_base_arguments():
    commands = {path for path, _ in FLAGS}
    assert commands <= set(BASE), f"add base arguments for {sorted(commands - set(BASE))}"
    for expected in [
        ("predict",),
        ("eval",),
        ("data", "check"),
        ("synth",),
        ("train",),
        ("pretrained", "finetune"),
    ]:
        assert expected in commands
    assert (("predict",), "--window") in FLAGS and (("data", "check"), "--timeout") in FLAGS


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize(("command", "flag"), FLAGS, ids=[" ".join((*c, f)) for c, f in FLAGS])
def test_numeric_flag_values_end_cleanly(command, flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in BASE[command]] + [flag, value]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, err = _run(argv, capsys)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert "Traceback" not in err, err
    assert grown_mib < 1024, f"{argv}: peak memory grew by {grown_mib:.0f} MiB"
    if value in ALWAYS_BAD:
        assert code == 2, f"{argv} was accepted (exit {code}): {err}"
    assert code in (0, 1, 2, 3), err
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "error" in lines[0], err
        assert flag in lines[0] or "must" in lines[0], err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["predict", "x.mp4", "--window", "nan"], "--window"),
        (["predict", "x.mp4", "--window", "1e-6"], "--window"),  # asked for 65 GiB
        (["predict", "x.mp4", "--hop", "0.001", "--window", "1"], "--hop"),
        (["predict", "x.mp4", "--decode-timeout", "inf"], "--decode-timeout"),  # OverflowError
        (["data", "check", "d", "--timeout", "0"], "--timeout"),
        (["data", "check", "d", "--timeout", "nan"], "--timeout"),
        (["predict", "x.mp4", "-o", "{tmp}/no/such/folder/out.jsonl"], "does not exist"),
        (["predict", "x.mp4", "-o", "{tmp}"], "is a folder"),
        (["savld", "build", "--video-labels", "v", "--audio-labels", "a", "--out", "{tmp}"], "is a folder"),
    ],
)
def test_bad_values_and_outputs_fail_before_any_model_loads(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "imd_core.model.checkpoint.load_model",
        lambda *a, **k: pytest.fail("the model loaded before the check"),
    )
    code, err = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_eval_json_is_valid_json_when_metrics_are_nan(tmp_path, capsys, monkeypatch):
    nan = float("nan")
    result = {
        "model": "m", "data": "d", "split": "all", "clips": 2, "views": "1x1", "top1": nan, "top5": math.inf,
        "mean_class_accuracy": nan, "relevance_accuracy": None, "audio_drop_rate": 0.5,
        "accuracy_audio_kept": nan, "accuracy_audio_dropped": nan, "per_class_accuracy": {"a": nan},
    }  # fmt: skip
    monkeypatch.setattr("imd_core.train.eval_run.evaluate_model_folder", lambda *a, **k: result)
    assert main(["eval", "--model", str(tmp_path), "--data", str(tmp_path), "--json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    assert data["top1"] is None and data["top5"] is None and data["per_class_accuracy"] == {"a": None}
    assert data["audio_drop_rate"] == 0.5
