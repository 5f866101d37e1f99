"""From an ``imd_core`` :class:`WindowResult` to what the live panel shows, words included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from imd_app.types import LiveResult
from imd_core.inference.results import WindowResult


def audio_reason(
    result: WindowResult,
    threshold: float,
    savld: Mapping[str, Sequence[str]],
    max_tags: int = 5,
) -> str:
    """Why the audio was used or dropped, in words.

    Examples: ``"tags speech, music: no overlap with SAVLD(playing guitar)"``,
    ``"tags guitar, strum match SAVLD(playing guitar) (IoU 0.25); relevance 0.91 >= 0.50"``.
    """
    audio = result.audio
    if not audio.present:
        return "no audio in this window: video only"
    # only the tags the rule counted (top-k above the "Silence" floor); older results
    # without that list fall back to the top tags
    heard = [t.label for t in audio.tags] if audio.heard is None else list(audio.heard)
    heard = heard[:max_tags]
    if not heard:
        verdict = "dropped" if audio.dropped else "kept"
        return f"nothing heard above 'Silence': audio {verdict}"
    tags = ", ".join(heard)
    top1 = result.label
    rel = "" if audio.relevance is None else f"relevance {audio.relevance:.2f}"
    if top1 in savld:
        overlap = sorted(set(heard) & set(savld[top1]))
        if audio.savld_iou is not None:
            iou = audio.savld_iou
        else:
            iou = len(overlap) / max(len(set(savld[top1]) | set(heard)), 1)
        if not overlap and iou <= 0:
            link = f"no overlap with SAVLD({top1})"
        else:
            shared = ", ".join(overlap)
            link = f"match SAVLD({top1})" + (f" on {shared}" if shared else "") + f" (IoU {iou:.2f})"
    else:
        link = f"SAVLD has no entry for {top1!r}"
    if audio.dropped:
        cmp = f"; {rel} < {threshold:.2f}" if rel else ""
        return f"tags {tags}: {link}{cmp}"
    cmp = f"; {rel} >= {threshold:.2f}" if rel else ""
    return f"tags {tags}: {link}{cmp}"


def to_live_result(
    result: WindowResult,
    labels: Sequence[str],
    threshold: float,
    savld: Mapping[str, Sequence[str]],
    skipped: int = 0,
) -> LiveResult:
    """Converts an engine result for the GUI.

    ``scores`` is every class's probability when the result carries them; otherwise the
    top-5 scores at their class index and NaN elsewhere (a timeline curve then has gaps
    where a class left the top five).
    """
    full = getattr(result, "scores", ())
    if len(full) == len(labels):
        scores = np.asarray(full, dtype=np.float32)
    else:
        index = {name: i for i, name in enumerate(labels)}
        scores = np.full(len(labels), np.nan, dtype=np.float32)
        for t in result.top:
            if t.label in index:
                scores[index[t.label]] = t.score
    return LiveResult(
        start=float(result.start),
        end=float(result.end),
        top=tuple((t.label, float(t.score)) for t in result.top),
        scores=scores,
        tags=tuple((t.label, float(t.score)) for t in result.audio.tags),
        relevance=result.audio.relevance,
        threshold=float(threshold),
        audio_present=result.audio.present,
        dropped=result.audio.dropped,
        savld_iou=result.audio.savld_iou,
        reason=audio_reason(result, threshold, savld),
        latency=float(result.latency or 0.0),
        skipped=int(skipped),
        confident=bool(result.confident),
    )
