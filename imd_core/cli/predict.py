"""``imd predict``: classify files and folders, one result per window.

Usage: ``imd predict videos/ --model runs/x/best --window 4 --hop 2 --json > out.jsonl``.
Results go to stdout in input order; a file that cannot be read (or whose decode passes
``--decode-timeout``) is reported on stderr as ``PATH: reason`` while the others go on,
and the exit code is 3.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import IO, Any

from imd_core.cli.argtypes import bounded_float, bounded_int, output_file
from imd_core.media.sandbox import DEFAULT_DECODE_TIMEOUT

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 3
# A window or hop below 0.1 s plans millions of windows per decoded chunk (1e-6 s asked
# for 65 GiB); a day is longer than any file a window is meant for.
WINDOW_SECONDS = bounded_float(0.1, 86400.0)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify video files or folders (one result per window)",
        description=(
            "Classify video files and folders (searched recursively) with an IMD model. "
            "Prints one result per window (per clip without --window). Under torchrun each "
            "rank takes a share of the files and rank 0 writes all results in input order."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="video files or folders")
    p.add_argument("--model", metavar="DIR", help="checkpoint folder (default: the embedded demo model)")
    p.add_argument(
        "--window",
        type=WINDOW_SECONDS,
        metavar="SEC",
        help="window length in seconds, 0.1 to 86400 (default: whole clip)",
    )
    p.add_argument(
        "--hop",
        type=WINDOW_SECONDS,
        metavar="SEC",
        help="seconds between window starts, 0.1 to 86400 (default: --window)",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json", dest="format", action="store_const", const="json", help="one JSON object per line"
    )
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV with a header row")
    p.set_defaults(format="text")
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="compute device (default: auto)"
    )
    p.add_argument(
        "--threads",
        type=bounded_int(1, 1024),
        metavar="N",
        help="CPU threads for torch (default: one per core)",
    )
    p.add_argument(
        "--batch-size",
        type=bounded_int(1, 4096),
        default=8,
        metavar="N",
        help="windows per forward pass (default: 8)",
    )
    p.add_argument(
        "--compile",
        default="none",
        choices=("none", "default", "reduce-overhead", "max-autotune"),
        help=(
            "torch.compile the whole model forward as one graph before the first file (GPU: "
            "reduce-overhead = CUDA graphs for batch 1, default/max-autotune for --batch-size; "
            "takes seconds to minutes; demo model on a 2-core CPU: ~2 min cold, then ~10-15%% faster)"
        ),
    )
    p.add_argument(
        "--decode-workers",
        type=bounded_int(0, 64),
        default=None,
        metavar="N",
        help=(
            "files decoded ahead on threads while the model runs (0: one at a time; default: 2 "
            "on a GPU, on a CPU 1 when --threads leaves a core free, else 0)"
        ),
    )
    p.add_argument(
        "--decode-timeout",
        type=bounded_float(0.0, 86400.0),
        default=DEFAULT_DECODE_TIMEOUT,
        metavar="SEC",
        help=(
            "decode each file in a worker process killed when its decode keeps the run waiting "
            "longer than SEC plus the duration the file claims; the file is then reported as "
            f"timed out and the others go on (default: {DEFAULT_DECODE_TIMEOUT:g}; 0: decode in "
            "this process, saving ~0.3 s of start-up, but a file that hangs inside FFmpeg hangs the run)"
        ),
    )
    p.add_argument(
        "-o", "--output", type=output_file, metavar="FILE", help="write results to FILE instead of stdout"
    )
    prog = p.add_mutually_exclusive_group()
    prog.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show progress"
    )
    prog.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    p.set_defaults(func=run)


class ResultWriter:
    """Writes results as text lines, JSON lines or CSV rows, flushing after each file."""

    def __init__(self, fmt: str, stream: IO[str]) -> None:
        from imd_core.inference.results import csv_header

        self.fmt, self.stream = fmt, stream
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(csv_header())

    def write(self, results: Any, warnings: tuple[str, ...] = ()) -> None:
        """One file's results; ``warnings`` (its notes, e.g. damaged packets) go into each JSON object."""
        for r in results:
            if self.fmt == "json":
                obj = {**r.to_json_dict(), "warnings": list(warnings)}
                self.stream.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
            elif self._csv is not None:
                self._csv.writerow(r.to_csv_row())
            else:
                self.stream.write(r.to_text() + "\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from imd_core.inference.distributed import init_from_env, shutdown

    info = init_from_env()
    try:
        return _run(args, info)
    finally:
        shutdown(info)


def _run(args: argparse.Namespace, info: Any) -> int:
    import torch

    from imd_core.errors import ConfigError
    from imd_core.inference.inputs import expand_inputs, plan_windows
    from imd_core.inference.predictor import Predictor
    from imd_core.resources import demo_model_dir

    plan_windows(1.0, args.window, args.hop)  # refuses bad --window/--hop before any work
    if not args.decode_timeout >= 0:
        raise ConfigError(
            f"--decode-timeout must be >= 0 seconds (0 disables it), got {args.decode_timeout:g}"
        )
    files, input_errors = expand_inputs(args.paths)
    device = args.device
    if info.enabled and device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{info.local_rank % torch.cuda.device_count()}"
    predictor = Predictor(
        args.model or demo_model_dir(),
        device=device,
        threads=args.threads,
        batch_size=args.batch_size,
        compile=args.compile,
        decode_workers=args.decode_workers,
        decode_timeout=args.decode_timeout,
    )
    try:
        return _predict(args, info, predictor, files, input_errors)
    finally:
        predictor.close()


def _predict(args: argparse.Namespace, info: Any, predictor: Any, files: list, input_errors: list) -> int:
    from tqdm import tqdm

    from imd_core.inference.distributed import gather_to_main
    from imd_core.inference.inputs import shard

    if args.compile != "none":
        # compile (and record CUDA graphs) for the shapes this run uses, before the first file
        # (batches are padded to --batch-size; only a lone whole clip runs at batch 1)
        predictor.warmup([1 if len(files) == 1 and args.window is None else args.batch_size])
    mine = shard(files, info.rank, info.world_size)
    show = args.progress if args.progress is not None else (len(files) > 1 and sys.stderr.isatty())
    bar = tqdm(
        total=len(mine), file=sys.stderr, unit="file", disable=not (show and info.is_main), leave=False
    )

    def report(path: str, reason: str) -> None:
        tqdm.write(f"{path}: {reason}", file=sys.stderr)

    if info.is_main:
        for err in input_errors:
            report(err.path, err.reason)
    status = {"bad": bool(input_errors), "unexpected": False}
    out_stream = (
        open(args.output, "w", encoding="utf-8", newline="") if args.output and info.is_main else None
    )
    try:
        writer = ResultWriter(args.format, out_stream or sys.stdout) if info.is_main else None

        def handle(outcome: Any) -> None:
            if outcome.ok:
                if writer is not None:
                    writer.write(outcome.results, outcome.warnings)
                for note in outcome.warnings:  # processed anyway: a warning, not a failure line
                    tqdm.write(f"warning: {outcome.path}: {note}", file=sys.stderr)
            else:
                report(outcome.path, outcome.error)
                status["bad" if outcome.bad_input else "unexpected"] = True

        outcomes = predictor.predict_paths([files[i] for i in mine], args.window, args.hop)
        if not info.enabled:
            for outcome in outcomes:
                handle(outcome)
                bar.update(1)
        else:
            # Each rank keeps its outcomes (results are small) and rank 0 merges them in input order.
            local = []
            for i, outcome in zip(mine, outcomes, strict=True):
                local.append((i, outcome))
                bar.update(1)
            gathered = gather_to_main(local, info)
            if gathered is not None:
                for _, outcome in sorted((pair for part in gathered for pair in part), key=lambda p: p[0]):
                    handle(outcome)
    except BrokenPipeError:
        # `imd predict ... | head`: the reader is gone; stop quietly like other Unix tools.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- keeps the exit flush quiet
        return EXIT_OK
    finally:
        bar.close()
        if out_stream is not None:
            out_stream.close()
    if not info.is_main:
        return EXIT_OK  # rank 0 reports for the whole job
    if status["unexpected"]:
        return EXIT_UNEXPECTED
    return EXIT_BAD_INPUT if status["bad"] else EXIT_OK
