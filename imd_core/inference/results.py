"""What inference produces: one frozen :class:`WindowResult` per window, and its formats.

:func:`window_results` converts a model's tensor ``Prediction`` once into the one result
type the CLI and the app read. It crosses threads and processes, so it is a frozen
dataclass of plain Python values; its text, JSON-lines and CSV forms (the outputs of
``imd predict``) are defined here once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from imd_core.inference.inputs import WindowInput
    from imd_core.model.outputs import Prediction

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
        savld_labels: the SAVLD labels of the predicted class, in the model's audio label
            order; ``None`` when the SAVLD has none for it, the model has no SAVLD, or the
            result was read from JSON (not part of the JSON or CSV).
    """

    present: bool
    tags: tuple[LabelScore, ...] = ()
    relevance: float | None = None
    dropped: bool = True
    savld_iou: float | None = None
    heard: tuple[str, ...] | None = None
    savld_labels: tuple[str, ...] | None = None

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

    def audio_reason(self, threshold: float, max_tags: int = 5) -> str:
        """Why the audio was used or dropped, in words (at most ``max_tags`` heard tags).

        ``threshold``: the model's relevance threshold (``Predictor.relevance_threshold``).
        Examples: ``"tags Speech, Music: no overlap with SAVLD(playing guitar); relevance
        0.12 < 0.50"``, ``"tags Guitar, Strum: match SAVLD(playing guitar) on Guitar (IoU
        0.25); relevance 0.91 >= 0.50"``.
        """
        a = self.audio
        if not a.present:
            return "no audio in this window: video only"
        # only the tags the rule counted; a result read from an older JSON file has its top tags
        heard = ([t.label for t in a.tags] if a.heard is None else list(a.heard))[:max_tags]
        if not heard:
            return f"nothing heard above 'Silence': audio {'dropped' if a.dropped else 'kept'}"
        top1 = self.label
        if a.savld_labels is None:
            link = f"SAVLD has no entry for {top1!r}"
        else:
            overlap = sorted(set(heard) & set(a.savld_labels))
            iou = a.savld_iou
            if iou is None:
                iou = len(overlap) / max(len(set(a.savld_labels) | set(heard)), 1)
            if not overlap and iou <= 0:
                link = f"no overlap with SAVLD({top1})"
            else:
                shared = f" on {', '.join(overlap)}" if overlap else ""
                link = f"match SAVLD({top1}){shared} (IoU {iou:.2f})"
        cmp = ""
        if a.relevance is not None:
            cmp = f"; relevance {a.relevance:.2f} {'<' if a.dropped else '>='} {threshold:.2f}"
        return f"tags {', '.join(heard)}: {link}{cmp}"


def window_results(
    prediction: Prediction,
    windows: Sequence[WindowInput],
    labels: Sequence[str],
    audio_labels: Sequence[str],
    k: int = TOP_K,
) -> list[WindowResult]:
    """A model's :class:`~imd_core.model.outputs.Prediction` -> one :class:`WindowResult`
    per window: the first ``len(windows)`` clips (a compiled batch may be padded).

    The one place where tensors become labels and numbers: ``k`` best classes and tags,
    the heard tags and the SAVLD labels of the top class (what an explanation names).
    """
    n = len(windows)
    p = prediction
    tags = p.tag_probs[:n]
    top_tags = tags.topk(min(k, tags.shape[-1]), dim=-1)
    tag_values, tag_indices = top_tags.values.tolist(), top_tags.indices.tolist()
    probs = p.probs[:n].cpu().numpy().astype(np.float64)  # (n, C)
    relevance = p.relevance[:n].tolist()
    kept, present = p.audio_kept[:n].tolist(), p.audio_present[:n].tolist()
    confident = p.confident[:n].tolist()
    ious = None if p.savld_iou is None else p.savld_iou[:n].tolist()
    heard = _names_per_row(p.heard[:n], audio_labels)
    savld = None if p.savld_labels is None else _names_per_row(p.savld_labels[:n], audio_labels)
    out = []
    for i, w in enumerate(windows):
        order = np.argsort(-probs[i], kind="stable")[:k]
        if present[i]:
            audio = AudioResult(
                present=True,
                tags=tuple(
                    LabelScore(audio_labels[j], s) for s, j in zip(tag_values[i], tag_indices[i], strict=True)
                ),
                relevance=float(relevance[i]),
                dropped=not kept[i],
                savld_iou=None if ious is None else float(ious[i]),
                heard=heard[i],
                savld_labels=(savld[i] or None) if savld is not None else None,
            )
        else:  # the tagger ran on silence: its tags and the relevance mean nothing
            audio = NO_AUDIO
        out.append(
            WindowResult(
                path=w.path,
                start=float(w.start),
                end=float(w.end),
                top=tuple(LabelScore(labels[int(j)], float(probs[i, j])) for j in order),
                audio=audio,
                scores=tuple(probs[i].tolist()),
                confident=bool(confident[i]),
            )
        )
    return out


def _names_per_row(mask: Any, names: Sequence[str]) -> list[tuple[str, ...]]:
    """``(n, A)`` bool tensor -> each row's names, in label order."""
    rows: list[list[str]] = [[] for _ in range(mask.shape[0])]
    for i, j in mask.nonzero().tolist():
        rows[i].append(names[j])
    return [tuple(r) for r in rows]


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
