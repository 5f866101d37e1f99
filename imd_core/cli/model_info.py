"""``imd model-info``: parameters and FLOPs of a model size or a saved model folder."""

from __future__ import annotations

import argparse
import sys

from imd_core.cli import jsonout
from imd_core.cli.argtypes import bounded_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "model-info",
        help="parameters per visual stream, total parameters and GFLOPs per clip of a model",
        description=(
            "Prints size, params_per_stream (one visual stream, as in the paper's table), params_total "
            "(both streams, AST tagger, relevance network, fusion and head), gflops_per_clip (one clip, one "
            "view, counted with torch.utils.flop_counter; a multiply-add is 2 FLOPs), frames, image_size "
            "and audio_seconds. A --size model is built without weights (meta device) with the public "
            "AudioSet AST architecture."
        ),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--size", choices=["tiny", "small", "base", "large"], help="a preset size")
    src.add_argument(
        "--model",
        metavar="DIR",
        help="a saved model folder or a name: kinetics400, demo (default: demo, as predict)",
    )
    p.add_argument(
        "--num-classes",
        type=bounded_int(1, 100_000),
        default=400,
        metavar="C",
        help="action classes of a --size model (default 400, Kinetics-400)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from imd_core.model.flops import build_for_size, model_info

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.size is None:
        from imd_core.model.checkpoint import load_model

        model = load_model(args.model or "demo")
    else:
        model = build_for_size(args.size, num_classes=args.num_classes)
    info = model_info(model)
    if args.json:
        print(jsonout.dumps(info))  # noqa: T201
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            shown = f"{value:,}" if isinstance(value, int) else value
            print(f"{key:<{width}}  {shown}", file=sys.stdout)  # noqa: T201
    return 0
