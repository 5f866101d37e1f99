"""What a loading process decodes in its decode sandbox: module-level, torch-free jobs.

A job *returns* the ``ImdError`` its file raised instead of raising it, so the one
``DecodeError`` the sandbox raises means that the sandbox stopped the decode (deadline or
crash). Torch-free because torch in a sandbox would add seconds to each one's start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from imd_core.errors import ImdError


def decode(
    path: str,
    start: float,
    end: float | None,
    times: Callable[..., np.ndarray] | None,
    rng: np.random.Generator | None,
    **kwargs: Any,
) -> tuple[Any, np.random.Generator | None]:
    """``decode_clip(path, start, end, **kwargs)`` picking ``times(start, end, rng)``.

    Returns:
        The ``DecodedClip`` (or the ``ImdError`` the file raised) and ``rng`` as the
        times left it, for the caller to go on drawing from.
    """
    from imd_core.media.decode import decode_clip

    pick = None if times is None else (lambda s, e: times(s, e, rng))
    try:
        return decode_clip(path, start, end, times=pick, **kwargs), rng
    except ImdError as exc:
        return exc, rng


def duration(path: str) -> float | ImdError:
    """The seconds ``path`` lasts (0 when it does not say), or the ``ImdError`` it raised."""
    from imd_core.media.decode import probe

    try:
        return probe(path).duration or 0.0
    except ImdError as exc:
        return exc
