"""Why a prediction: what each region's prediction leaned on, in words and as evidence lines.

The final model of stage 2 is a weighted mix of routes (``stack.py``); its labelled-neighbour term
adds the residuals of each region's nearest labelled regions with inverse-distance weights. So a
region's prediction leans on (a) the routes, by their weights (the same for every region), and
(b) its own labelled neighbours, by weight x the neighbour term's share. ``why_texts`` says both
for every region; ``evidence`` lists (region, labelled neighbour, weight) for a line layer.
"""
from __future__ import annotations

import numpy as np

ROUTE_WORDS = {"embedding": "embedding", "views": "own view values", "text": "text", "prompt": "prompt head"}


def why_texts(pr, region_ids, top: int = 3) -> list[str]:
    final = pr.chosen[-1]
    routes = ", ".join(f"{ROUTE_WORDS[r]} {final[r]:.2f}" for r in ROUTE_WORDS if final.get(r, 0) > 0.005)
    scale = f"; log scale {final['log1p']:.2f}" if final.get("log1p", 0) > 0.005 else ""
    rows, w = pr.evidence.get("rows"), pr.evidence.get("weights")
    out = []
    for i in range(len(region_ids)):
        parts = [f"routes: {routes}{scale}"]
        if rows is not None and final.get("neighbours", 0) > 0.005:
            order = np.argsort(-w[i], kind="stable")[:top]
            near = ", ".join(f"{region_ids[rows[i, j]]} ({w[i, j]:.2f})" for j in order if w[i, j] > 0)
            parts.insert(0, f"labelled neighbours {final['neighbours']:.2f}: {near}")
        text = "; ".join(parts)
        out.append(text if len(text) <= 250 else text[:249] + "…")
    return out


def evidence(pr, top: int = 3):
    """(region rows, labelled-neighbour rows, weights) of every region's ``top`` labelled neighbours."""
    rows, w = pr.evidence.get("rows"), pr.evidence.get("weights")
    if rows is None or not np.any(w > 0):
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    order = np.argsort(-w, axis=1, kind="stable")[:, :top]
    tgt = np.repeat(np.arange(len(rows)), order.shape[1])
    src = np.take_along_axis(rows, order, 1).reshape(-1)
    ww = np.take_along_axis(w, order, 1).reshape(-1)
    keep = ww > 0
    return tgt[keep], src[keep], ww[keep]
