"""Valid JSON for everything ``imd`` prints: a non-finite number becomes ``null``.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no strict JSON reader
accepts (``jq``, JavaScript, most languages). Every ``--json`` output goes through
:func:`dumps`, which writes such values as ``null`` and never emits a bare ``NaN``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in any list, tuple or dict) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        return finite(value.item())  # a numpy or torch scalar
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes non-finite numbers as ``null`` (``allow_nan=False``)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
