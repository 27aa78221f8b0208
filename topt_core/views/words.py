"""Numbers in words for the region descriptions (each view's facet sentence uses these).

Counts are followed by a coarse level word ("very high" ... "very low", by quintile among the
regions). Small frozen language models read words better than digits, so the level words carry
most of the magnitude signal. Levels and ranks use the *features* of all regions (no labels).
"""
from __future__ import annotations

import numpy as np

LEVELS = ("very low", "low", "medium", "high", "very high")
MAX_LISTED = 8           # categories listed by name; the rest are summed as "others"


def levels(values: np.ndarray) -> list[str]:
    """Quintile level word of each value among all regions."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return []
    ranks = v.argsort(kind="stable").argsort(kind="stable")
    q = np.minimum((ranks * 5) // max(len(v), 1), 4)
    if np.ptp(v) == 0:
        q = np.full(len(v), 2)
    return [LEVELS[int(i)] for i in q]


def rank(values: np.ndarray) -> np.ndarray:
    """1 = largest."""
    v = np.asarray(values, dtype=float)
    return (-v).argsort(kind="stable").argsort(kind="stable") + 1


def fmt(x: float) -> str:
    x = float(x)
    if abs(x - round(x)) < 1e-9:
        return f"{int(round(x))}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def pct(share: float) -> str:
    p = 100 * share
    return f"{p:.0f}%" if p >= 10 else f"{p:.1f}%"


def composition(counts: np.ndarray, names: list, unit: str, total_word: str) -> list[str]:
    """"<total_word>: 143 parking (26%), ...; 558 in total (high)." per region."""
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(1)
    lvl = levels(totals)
    out = []
    for i in range(counts.shape[0]):
        tot = totals[i]
        if tot <= 0:
            out.append(f"No {unit} recorded.")
            continue
        order = [j for j in np.argsort(-counts[i], kind="stable") if counts[i, j] > 0]
        shown = order[:MAX_LISTED]
        parts = [f"{fmt(counts[i, j])} {names[j]} ({pct(counts[i, j] / tot)})" for j in shown]
        rest = counts[i, order[MAX_LISTED:]].sum() if len(order) > MAX_LISTED else 0
        if rest > 0:
            parts.append(f"{fmt(rest)} others ({pct(rest / tot)})")
        out.append(f"{total_word}: {', '.join(parts)}; {fmt(tot)} in total ({lvl[i]}).")
    return out


def attributes(values: np.ndarray, names: list, lead: str) -> list[str]:
    """"<lead>: income = 52000 (high), pop = 1200 (low)." per region."""
    ex = np.asarray(values, dtype=float)
    lv = [levels(ex[:, j]) for j in range(ex.shape[1])]
    return [f"{lead}: " + ", ".join(f"{names[j]} = {fmt(ex[i, j])} ({lv[j][i]})" for j in range(ex.shape[1])) + "."
            for i in range(ex.shape[0])]
