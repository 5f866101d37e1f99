"""Tables and a plot from ``scripts/matched_study.py``'s rows (one JSON row per run).

Paired tests: every variant of a cell is tested on the same clips, so two variants are
compared by McNemar's exact test on the clips where exactly one is right, pooled over the
data seeds; a verdict (win / tie / loss at 5 %) is Holm-corrected over the cells it covers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

SHOWN = (
    "video_only",
    "naive_fusion",
    "modality_dropout",
    "imd",
    "imd_agree",
    "imd_xmod",
    "imd_agree_k3",
    "oracle",
)
SHORT = {
    "video_only": "video",
    "naive_fusion": "naive",
    "modality_dropout": "mod. drop",
    "imd": "IMD",
    "imd_agree": "IMD+agree (shipped)",
    "imd_xmod": "IMD+xmod",
    "imd_agree_k3": "IMD+agree, SAVLD K=3",
    "oracle": "oracle",
}
KINDS = ("relevant", "irrelevant", "misleading", "silent")


def bits(hex_: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_), np.uint8))[:n].astype(bool)


class Rows:
    """The runs by ``(Q, P, M, S, variant)``; ``video_only`` serves every cell of its Q."""

    def __init__(self, path: Path) -> None:
        self.rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        self.cell: dict[tuple, list[dict]] = defaultdict(list)
        for r in self.rows:
            self.cell[(r["Q"], r["P"], r["M"], r["S"], r["variant"])].append(r)
        self.qs = sorted({r["Q"] for r in self.rows})
        self.ps = sorted({r["P"] for r in self.rows if r["P"] is not None}, reverse=True)
        self.ms = sorted({r["M"] for r in self.rows if r["M"] is not None})
        self.ss = sorted({r["S"] for r in self.rows if r["S"] is not None})

    def runs(self, q, p, m, s, variant) -> list[dict]:
        key = (q, None, None, None, variant) if variant == "video_only" else (q, p, m, s, variant)
        return sorted(self.cell.get(key, []), key=lambda r: r["seed"])

    def correct(self, q, p, m, s, variant) -> np.ndarray:
        runs = self.runs(q, p, m, s, variant)
        n = sum(runs[0][f"n_{k}"] for k in KINDS) if runs else 0
        return np.concatenate([bits(r["correct"], n) for r in runs]) if runs else np.zeros(0, bool)

    def top1(self, q, p, m, s, variant) -> tuple[float, float] | None:
        vals = [r["top1"] for r in self.runs(q, p, m, s, variant)]
        return (float(np.mean(vals)), float(np.std(vals))) if vals else None

    def compare(self, q, p, m, s, a: str, b: str) -> tuple[float, float] | None:
        """``a`` minus ``b`` in top-1 points over the pooled clips, and McNemar's p."""
        ca, cb = self.correct(q, p, m, s, a), self.correct(q, p, m, s, b)
        if not len(ca) or len(ca) != len(cb):
            return None
        only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
        p_value = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        return 100.0 * (ca.mean() - cb.mean()), float(p_value)


def holm(pvalues: list[float]) -> list[float]:
    order = np.argsort(pvalues)
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def verdict_table(rows: Rows, a: str, b: str) -> str:
    """``a`` minus ``b`` in every cell: points, p, and the Holm-corrected verdict."""
    settings = [(m, s) for s in rows.ss for m in rows.ms]
    cells = [(q, p, m, s) for q in rows.qs for p in rows.ps for m, s in settings]
    diffs = {c: rows.compare(*c, a, b) for c in cells}
    known = [c for c in cells if diffs[c] is not None]
    adjusted = dict(zip(known, holm([diffs[c][1] for c in known]), strict=True))
    head = "| Q | P | " + " | ".join(f"S = {s:g}, M = {m:g}" for m, s in settings) + " |"
    out = [head, "|---|---|" + "---|" * len(settings)]
    for q in rows.qs:
        for p in rows.ps:
            cols = []
            for m, s in settings:
                d = diffs[(q, p, m, s)]
                if d is None:
                    cols.append("-")
                    continue
                mark = "tie" if adjusted[(q, p, m, s)] >= 0.05 else ("**win**" if d[0] > 0 else "loss")
                cols.append(f"{d[0]:+.1f} (p {d[1]:.2g}) {mark}")
            out.append(f"| {q:g} | {p:g} | " + " | ".join(cols) + " |")
    return "\n".join(out)


def top1_table(rows: Rows, m: float, s: float) -> str:
    shown = [v for v in SHOWN if any(k[4] == v for k in rows.cell)]
    out = ["| Q | P | " + " | ".join(SHORT[v] for v in shown) + " |", "|---|---|" + "---|" * len(shown)]
    for q in rows.qs:
        for p in rows.ps:
            cols = []
            for v in shown:
                t = rows.top1(q, p, m, s, v)
                cols.append("-" if t is None else f"{t[0]:.3f} +- {t[1]:.3f}")
            out.append(f"| {q:g} | {p:g} | " + " | ".join(cols) + " |")
    return "\n".join(out)


def kind_table(rows: Rows, q: float, p: float, variants: tuple[str, ...]) -> str:
    """Per audio kind, pooled over seeds: top-1 and the share of clips whose audio was dropped."""
    out = [
        "| S | M | variant | keep/drop acc. | "
        + " | ".join(f"top-1 {k}" for k in KINDS)
        + " | "
        + " | ".join(f"drop {k}" for k in KINDS)
        + " | shortcut |",
        "|---|---|---|---|" + "---|" * (2 * len(KINDS) + 1),
    ]
    for s in rows.ss:
        for m in rows.ms:
            for v in variants:
                runs = rows.runs(q, p, m, s, v)
                if not runs:
                    continue

                def pooled(field: str, kind: str, runs=runs) -> str:
                    n = sum(r[f"n_{kind}"] for r in runs)
                    return f"{sum(r.get(field, 0.0) * r[f'n_{kind}'] for r in runs) / n:.2f}" if n else "-"

                acc = np.mean([r["keep_drop_acc"] for r in runs])
                short = np.mean([r["shortcut_rate"] for r in runs if r["shortcut_rate"] is not None])
                out.append(
                    f"| {s:g} | {m:g} | {SHORT[v]} | {acc:.3f} | "
                    + " | ".join(pooled(f"top1_{k}", k) for k in KINDS)
                    + " | "
                    + " | ".join(pooled(f"drop_{k}", k) for k in KINDS)
                    + f" | {short:.2f} |"
                )
    return "\n".join(out)


def plot(rows: Rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [(m, s) for s in rows.ss for m in rows.ms]
    fig, axes = plt.subplots(
        len(settings),
        len(rows.qs),
        figsize=(4 * len(rows.qs), 3 * len(settings)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for i, (m, s) in enumerate(settings):
        for j, q in enumerate(rows.qs):
            ax = axes[i, j]
            for v in SHOWN:
                pts = [(p, rows.top1(q, p, m, s, v)) for p in rows.ps]
                pts = [(p, t[0]) for p, t in pts if t is not None]
                if pts:
                    style = "--" if v in ("video_only", "oracle") else "-"
                    ax.plot(*zip(*pts, strict=True), style, marker="o", ms=3, label=SHORT[v])
            ax.set_title(f"Q = {q:g}, S = {s:g}, M = {m:g}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(settings) - 1:
                ax.set_xlabel("relevance P")
            if j == 0:
                ax.set_ylabel("top-1")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(rows_path: Path, plot_path: Path) -> str:
    rows = Rows(rows_path)
    plot(rows, plot_path)
    cpu = sum(r["cpu_s"] for r in rows.rows) / 60
    parts = [f"{len(rows.rows)} runs, {cpu:.0f} CPU minutes of head training (pools not counted)"]
    for s in rows.ss:
        for m in rows.ms:
            parts += [
                f"\n### Top-1, S = {s:g}, M = {m:g} (mean +- std over data seeds)\n",
                top1_table(rows, m, s),
            ]
    for a, b in (("imd_agree", "naive_fusion"), ("imd", "naive_fusion"), ("oracle", "naive_fusion"),
                 ("imd_agree", "video_only"), ("imd_agree", "imd"), ("imd_xmod", "imd"),
                 ("modality_dropout", "naive_fusion"), ("imd_agree_k3", "imd_agree")):  # fmt: skip
        parts += [
            f"\n### {SHORT[a]} minus {SHORT[b]}, top-1 points (McNemar p, pooled seeds)\n",
            verdict_table(rows, a, b),
        ]
    for q in rows.qs:
        parts += [
            f"\n### Per audio kind at Q = {q:g}, P = 0.5\n",
            kind_table(rows, q, 0.5, ("naive_fusion", "imd", "imd_agree", "imd_agree_k3", "oracle")),
        ]
    return "\n".join(parts)
