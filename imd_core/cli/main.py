"""Entry point of the ``imd`` command.

Each subcommand is a module ``imd_core/cli/<name>.py`` with ``register(subparsers)``; it
imports torch inside its ``run`` so that ``imd --help`` stays instant. Exit codes: 0
success, 1 unexpected failure, 2 usage or configuration error, 3 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn

from imd_core import __version__
from imd_core.errors import ImdError

# Explicit list, no registry: add a module here when you add a subcommand.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "synth",
    "predict",
    "data",
    "train",
    "eval",
    "savld",
    "model_info",
    "pretrained",
)


class ImdArgumentParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line (exit code 2), like every other ``imd`` error.

    Subcommand parsers are created with the parent's class, so every ``imd CMD`` gets it.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ImdArgumentParser(
        prog="imd",
        description="IMD Studio: audio-visual action recognition with learnable irrelevant modality dropout.",
    )
    parser.add_argument("--version", action="version", version=f"imd {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"imd_core.cli.{name}").register(sub)
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: list[str] | None = None) -> int:
    # Before torch loads (build_parser imports subcommands): OpenMP threads that sleep
    # instead of spinning between ops. On a busy 2-core machine spinning made 2-thread
    # inference 6-10x slower (docs/PERFORMANCE.md, Inference); a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (its one line is printed): returned like any other error
        if exc.code in (0, None):  # --help, --version
            raise
        return int(exc.code) if isinstance(exc.code, int) else 2
    setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ImdError as exc:
        print(f"imd {args.command}: error: {exc}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"imd {args.command}: interrupted", file=sys.stderr)  # noqa: T201
        return 130


if __name__ == "__main__":
    sys.exit(main())
