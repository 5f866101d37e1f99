"""``imd data``: dataset tools. ``imd data check DATA [--json]`` decodes every file.

Exit code 0 when every file is usable (ok or without audio), 3 otherwise; every
unusable file is also reported on stderr as ``PATH: reason``.
"""

from __future__ import annotations

import argparse
import sys

from imd_core.cli import jsonout
from imd_core.cli.argtypes import bounded_float, bounded_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="dataset tools (check)",
        description="Dataset tools. DATA is a class-folder tree (DATA/<class>/*.mp4, optionally under "
        "train/ val/ test/) or a manifest.csv / manifest.jsonl with columns path,label[,start,end,split].",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="decode every file; report ok / no-audio / error, class counts and durations",
        description="Decodes every file of a dataset (video and audio streams) and reports each as ok, "
        "no-audio or error with its reason, plus clips and seconds per class. "
        "Exit code 0 if every file is usable, 3 otherwise.",
    )
    check.add_argument("data", metavar="DATA", help="class-folder tree, or manifest .csv/.jsonl")
    check.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    check.add_argument("--labels", metavar="FILE", help="text file of class names, one per line (optional)")
    check.add_argument(
        "--workers", type=bounded_int(1, 256), default=1, metavar="N", help="decode N files in parallel"
    )
    check.add_argument(
        "--timeout",
        type=bounded_float(0.0, 86400.0, lo_open=True),
        default=120.0,
        metavar="S",
        help="per-file time limit (seconds, > 0)",
    )
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _read_labels(path: str) -> list[str]:
    from imd_core.errors import DataError

    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise DataError(f"{path}: cannot read the label file ({exc.strerror})") from None


def run_check(args: argparse.Namespace) -> int:
    from imd_core.data.check import check_dataset

    labels = _read_labels(args.labels) if args.labels else None
    progress = None
    if sys.stderr.isatty():

        def progress(done: int, total: int, result) -> None:
            sys.stderr.write(f"\rchecked {done}/{total} files")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    report = check_dataset(
        args.data, labels=labels, timeout=args.timeout, workers=max(1, args.workers), progress=progress
    )
    if args.json:
        sys.stdout.write(jsonout.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report.format_text() + "\n")
    for f in report.files:
        if f.status == "error":
            print(f"{f.path}: {f.reason}", file=sys.stderr)  # noqa: T201
    return 0 if report.usable else 3
