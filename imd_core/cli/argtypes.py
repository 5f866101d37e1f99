"""Typed, bounded ``argparse`` value parsers for every numeric flag of ``imd``.

A bad value (0 for a count, a negative, ``nan``, ``inf``, an absurd size) ends the
command while the command line is parsed, before anything loads: exit code 2 and one line
naming the flag and its valid range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["bounded_float", "bounded_int", "output_file"]


def _range_text(lo: float, hi: float, *, lo_open: bool = False) -> str:
    left = f"> {lo:g}" if lo_open else f">= {lo:g}"
    return f"a number {left} and <= {hi:g}"


def bounded_float(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """A parser for a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``).

    ``nan``, ``inf`` and values outside the range raise ``argparse.ArgumentTypeError``,
    which argparse turns into ``imd CMD: error: argument --flag: ...`` and exit code 2.
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        too_low = value <= lo if lo_open else value < lo
        if not math.isfinite(value) or too_low or value > hi:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {_range_text(lo, hi, lo_open=lo_open)}")
        return value

    parse.__name__ = "number"  # argparse names the type in its messages
    parse.bounds = (lo, hi)  # type: ignore[attr-defined]  # read by the flag sweep test
    return parse


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """A parser for an integer in ``[lo, hi]`` (``"1e3"`` and ``"2.5"`` are refused)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from {lo} to {hi}")
        return value

    parse.__name__ = "integer"
    parse.bounds = (lo, hi)  # type: ignore[attr-defined]
    return parse


def output_file(text: str) -> str:
    """A parser for a file the command will write: not a folder, in a folder that exists.

    Checked while parsing, so ``-o missing/dir/out.jsonl`` fails at once rather than after
    the model has loaded and the first file has been classified.
    """
    import os

    if not text:
        raise argparse.ArgumentTypeError("empty file name; name the file to write")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(
            f"{text} is a folder; name a file to write, e.g. {os.path.join(text, 'out.txt')}"
        )
    parent = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {parent} is not writable; choose another place")
    return text
