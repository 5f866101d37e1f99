"""What inference produces: one frozen :class:`WindowResult` per window, and its formats.

A result crosses threads (the app's inference worker -> GUI) and processes (torchrun
ranks -> rank 0), so it is a frozen dataclass of plain Python values. The three output
formats of ``imd predict`` live here so that the CLI, the app's batch tab (CSV export)
and tests share one definition:

* :meth:`WindowResult.to_json_dict` -- the JSON-lines object (``--json``);
* :func:`csv_header` / :meth:`WindowResult.to_csv_row` -- the flattened table (``--csv``);
* :meth:`WindowResult.to_text` -- the human-readable line (default).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

TOP_K = 5  # classes and audio tags per result, in JSON and CSV


@dataclasses.dataclass(frozen=True)
class LabelScore:
    """A label and its probability (softmax for classes, sigmoid for audio tags)."""

    label: str
    score: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": _round(self.score)}


@dataclasses.dataclass(frozen=True)
class AudioResult:
    """What the model decided about the window's audio.

    Attributes:
        present: the window had an audio track (and samples in the window).
        tags: the AST's top AudioSet tags, best first (empty without audio).
        relevance: the relevance network's probability that the audio is relevant to
            the action (``None`` without audio: nothing was judged).
        dropped: the audio was dropped before fusion (always ``True`` without audio).
        savld_iou: IoU between the top audio tags and the SAVLD labels of the
            predicted class (``None`` without audio or without a SAVLD table).
        heard: the tags the relevance rule counted (top-k above the "Silence" floor and
            the model's minimum score): what an explanation may name. ``None`` when
            unknown (a result read from an older JSON file).
    """

    present: bool
    tags: tuple[LabelScore, ...] = ()
    relevance: float | None = None
    dropped: bool = True
    savld_iou: float | None = None
    heard: tuple[str, ...] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "tags": [t.to_json_dict() for t in self.tags],
            "relevance": _round(self.relevance),
            "dropped": self.dropped,
            "savld_iou": _round(self.savld_iou),
            "heard": None if self.heard is None else list(self.heard),
        }


NO_AUDIO = AudioResult(present=False)


@dataclasses.dataclass(frozen=True)
class WindowResult:
    """The model's answer for one window of one source.

    Attributes:
        path: the input file (or the live source's name).
        start: window start in seconds from the beginning of the source.
        end: window end in seconds.
        top: the best classes, best first (at most :data:`TOP_K`).
        audio: the audio decision.
        latency: seconds from the window's last sample being available to this result
            being ready (streaming only; ``None`` for files). Not part of the JSON.
        scores: every class's probability in the model's label order (for plots; not
            part of the JSON or CSV; empty when the producer did not keep them).
        confident: False when the best probability is below the model's calibrated
            confidence threshold: "no confident action" (``top`` is still the ranking).
    """

    path: str
    start: float
    end: float
    top: tuple[LabelScore, ...]
    audio: AudioResult
    latency: float | None = None
    scores: tuple[float, ...] = dataclasses.field(default=(), repr=False, compare=False)
    confident: bool = True

    @property
    def label(self) -> str:
        """The best class."""
        return self.top[0].label if self.top else ""

    @property
    def score(self) -> float:
        return self.top[0].score if self.top else float("nan")

    def to_json_dict(self) -> dict[str, Any]:
        """The ``imd predict --json`` object (key order is part of the format)."""
        return {
            "path": self.path,
            "start": _round(self.start, 3),
            "end": _round(self.end, 3),
            "top": [t.to_json_dict() for t in self.top],
            "audio": self.audio.to_json_dict(),
            "confident": self.confident,
        }

    def to_csv_row(self, k: int = TOP_K) -> list[str]:
        """The ``--csv`` row matching :func:`csv_header` (missing ranks are empty)."""
        row = [self.path, _fmt(self.start, 3), _fmt(self.end, 3)]
        row += _flatten(self.top, k)
        a = self.audio
        row.append(_fmt_bool(a.present))
        row += _flatten(a.tags, k)
        row += [_fmt(a.relevance), _fmt_bool(a.dropped), _fmt(a.savld_iou)]
        row += ["" if a.heard is None else ";".join(a.heard), _fmt_bool(self.confident)]
        return row

    def to_text(self, k: int = 3) -> str:
        """One human-readable line: where, the best classes, the audio decision."""
        classes = ", ".join(f"{t.label} {t.score:.2f}" for t in self.top[:k])
        if not self.confident:
            classes = f"no confident action (best: {classes})"
        a = self.audio
        if not a.present:
            audio = "audio: none (dropped)"
        else:
            verdict = "dropped" if a.dropped else "kept"
            rel = "" if a.relevance is None else f", relevance {a.relevance:.2f}"
            tags = ", ".join(f"{t.label} {t.score:.2f}" for t in a.tags[:k])
            audio = f"audio: {verdict}{rel}; tags: {tags}"
        return f"{self.path} [{self.start:.2f}-{self.end:.2f}s]  {classes}  |  {audio}"


def csv_header(k: int = TOP_K) -> list[str]:
    """Column names of the ``--csv`` table (``k`` classes and ``k`` tags)."""
    cols = ["path", "start", "end"]
    for i in range(1, k + 1):
        cols += [f"top{i}_label", f"top{i}_score"]
    cols.append("audio_present")
    for i in range(1, k + 1):
        cols += [f"audio_tag{i}_label", f"audio_tag{i}_score"]
    cols += ["audio_relevance", "audio_dropped", "audio_savld_iou", "audio_heard", "confident"]
    return cols


def result_from_json_dict(data: dict[str, Any]) -> WindowResult:
    """Inverse of :meth:`WindowResult.to_json_dict` (used by tests and the app's import)."""
    a = data["audio"]
    return WindowResult(
        path=data["path"],
        start=float(data["start"]),
        end=float(data["end"]),
        top=tuple(LabelScore(t["label"], float(t["score"])) for t in data["top"]),
        audio=AudioResult(
            present=bool(a["present"]),
            tags=tuple(LabelScore(t["label"], float(t["score"])) for t in a["tags"]),
            relevance=None if a["relevance"] is None else float(a["relevance"]),
            dropped=bool(a["dropped"]),
            savld_iou=None if a["savld_iou"] is None else float(a["savld_iou"]),
            heard=None if a.get("heard") is None else tuple(str(t) for t in a["heard"]),
        ),
        confident=bool(data.get("confident", True)),
    )


def _flatten(scores: tuple[LabelScore, ...], k: int) -> list[str]:
    out: list[str] = []
    for i in range(k):
        if i < len(scores):
            out += [scores[i].label, _fmt(scores[i].score)]
        else:
            out += ["", ""]
    return out


def _round(x: float | None, digits: int = 6) -> float | None:
    # JSON has no NaN: an undefined number is null.
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _fmt(x: float | None, digits: int = 6) -> str:
    r = _round(x, digits)
    return "" if r is None else repr(r)


def _fmt_bool(x: bool) -> str:
    return "true" if x else "false"
