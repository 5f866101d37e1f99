"""``imd eval``: accuracy, relevance and audio-drop metrics of a model on a dataset."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from imd_core.cli import jsonout
from imd_core.cli.argtypes import bounded_float, bounded_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model folder on a dataset (top-1/5, per class, relevance, audio drops)",
        description=(
            "Evaluate MODEL on DATA (a folder per class or a CSV/JSONL manifest; the 'test' split if it has "
            "one, else 'val', else every clip). Under torchrun the processes share the batches and rank 0 "
            "prints the result (the same numbers as one process). Exit codes: 0 success, 2 bad arguments, 3 unusable data "
            "(every unreadable file is listed on stderr), 1 other failure."
        ),
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="model folder, or a run folder (its best/); default: the embedded demo model",
    )
    p.add_argument("--data", required=True, help="dataset folder or manifest")
    p.add_argument(
        "--views",
        default="1x1",
        metavar="CLIPSxCROPS",
        help="test views per clip: temporal clips x spatial crops (1 = centre, 3 = start/centre/end), e.g. 2x3 (default 1x1)",
    )
    p.add_argument(
        "--split",
        default=None,
        choices=("train", "val", "test", "all"),
        help="which part of DATA (default: test, else val, else all)",
    )
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=8)
    p.add_argument("--workers", type=bounded_int(0, 64), default=2, help="DataLoader worker processes")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--decode-timeout",
        type=bounded_float(0.0, 86400.0, lo_open=True),
        default=None,
        metavar="SEC",
        help="seconds one clip may take to decode; past them the file is skipped as hanging and "
        "listed with the unusable files (exit 3; default 300, as data.loader_timeout in training)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=run)


def parse_views(text: str) -> tuple[int, int]:
    from imd_core.errors import ConfigError

    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"--views {text!r}: expected CLIPSxCROPS with positive numbers, e.g. 1x1 or 2x3")
    return int(m.group(1)), int(m.group(2))


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    from imd_core.errors import ConfigError
    from imd_core.train.eval_run import evaluate_model_folder

    views = parse_views(args.views)
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    if args.model is None:
        from imd_core.resources import demo_model_dir

        model_dir = demo_model_dir()
    else:
        model_dir = Path(args.model)
        if (
            not (model_dir / "model.safetensors").is_file()
            and (model_dir / "best" / "model.safetensors").is_file()
        ):
            model_dir = model_dir / "best"  # a run folder: evaluate its best model
    result = evaluate_model_folder(
        model_dir,
        Path(args.data),
        views=views,
        split=args.split,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        loader_timeout=args.decode_timeout,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: every rank has the result, rank 0 reports
        return 3 if result.get("skipped_files") else 0
    for path, reason in result.get("skipped_files", []):
        line = reason if reason.startswith(str(path)) else f"{path}: {reason}"
        print(line, file=sys.stderr)  # noqa: T201
    if args.json:
        print(jsonout.dumps(result, ensure_ascii=False))  # noqa: T201
    else:
        lines = [
            f"model      {result['model']}",
            f"data       {result['data']} ({result['split']}, {result['clips']} clips, views {result['views']})",
            f"top1       {_fmt(result['top1'])}",
            f"top5       {_fmt(result['top5'])}",
            f"mean class {_fmt(result['mean_class_accuracy'])}",
            f"relevance  {_fmt(result['relevance_accuracy'])} (vs SAVLD IoU targets)",
            f"audio drop {_fmt(result['audio_drop_rate'])}  (top1 kept {_fmt(result['accuracy_audio_kept'])}, "
            f"dropped {_fmt(result['accuracy_audio_dropped'])})",
        ]
        lines += [f"  {name:<24} {_fmt(acc)}" for name, acc in result["per_class_accuracy"].items()]
        print("\n".join(lines))  # noqa: T201
    return 3 if result.get("skipped_files") else 0
