"""Prediction intervals by cross-conformal prediction (CV+, Barber et al. 2021) on the outer folds.

The outer folds already give, for every labelled region i, an out-of-fold prediction from the
model of its fold k(i), and each fold's model predicts every region. With the scores
s_i = |y_i - yhat_{-k(i)}(x_i)| / sigma_i, the CV+ interval of a region x at level 1 - alpha is

    [ q_alpha { yhat_{-k(i)}(x) - s_i sigma(yhat_{-k(i)}(x)) },  q_{1-alpha} { yhat_{-k(i)}(x) + s_i sigma(...) } ]

over the labelled i (the order statistics floor(alpha (n+1)) and ceil((1-alpha)(n+1))). ``sigma``
makes the widths follow the size of a count: sigma(p) = sqrt(max(p, 0) + c), c the median label,
for targets >= 0 (a Poisson-like spread); 1 otherwise. For a labelled region the interval uses its
own fold's model and the scores of the other folds' regions only, so the reported coverage is
measured on labels the interval never saw. Not MAPIE: its CV+ refits the estimator once per fold,
but our fold models (with their nested choices) already exist; the arithmetic is these few lines.
"""
from __future__ import annotations

import numpy as np


def _sigma(p, clip: bool, c: float):
    return np.sqrt(np.maximum(p, 0.0) + c) if clip else np.ones_like(p)


def cv_plus(y, folds, fold_predictions: dict, level: float, clip: bool, chunk: int = 2048):
    """(lo, hi) for every region. ``folds``: [(train rows, test rows)], ``fold_predictions``: k -> (N,)."""
    y = np.asarray(y, dtype=float)
    n = len(next(iter(fold_predictions.values())))
    lab_rows = np.concatenate([te for _, te in folds])
    fold_of = np.concatenate([np.full(len(te), k) for k, (_, te) in enumerate(folds)])
    known = y[lab_rows]
    c = float(np.median(known)) if clip else 0.0
    c = max(c, 1e-9)
    center_lab = np.array([fold_predictions[k][r] for k, r in zip(fold_of, lab_rows)])
    scores = np.abs(known - center_lab) / _sigma(center_lab, clip, c)
    alpha = 1.0 - level
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    P = np.stack([fold_predictions[k] for k in range(len(folds))])            # (K, N)
    m = len(lab_rows)
    k_lo = max(int(np.floor(alpha * (m + 1))), 1) - 1
    k_hi = min(int(np.ceil((1.0 - alpha) * (m + 1))), m) - 1
    for s in range(0, n, chunk):
        cols = np.arange(s, min(n, s + chunk))
        preds = P[fold_of[:, None], cols[None, :]]                             # (m, chunk): yhat_{-k(i)}(x)
        spread = scores[:, None] * _sigma(preds, clip, c)
        lo[cols] = np.partition(preds - spread, k_lo, axis=0)[k_lo]
        hi[cols] = np.partition(preds + spread, k_hi, axis=0)[k_hi]
    # labelled regions: their own fold's model and the other folds' scores
    for k, (_, te) in enumerate(folds):
        other = scores[fold_of != k]
        mo = len(other)
        if mo == 0:
            continue
        q = np.sort(other)[min(int(np.ceil(level * (mo + 1))), mo) - 1]
        center = fold_predictions[k][te]
        spread = q * _sigma(center, clip, c)
        lo[te], hi[te] = center - spread, center + spread
    if clip:
        lo = np.maximum(lo, 0.0)
    return lo, hi


def coverage(y, lo, hi, rows) -> tuple[float, float]:
    """(share of ``rows`` whose label lies in its interval, mean width over ``rows``)."""
    y, lo, hi = (np.asarray(a, dtype=float)[rows] for a in (y, lo, hi))
    return float(np.mean((y >= lo) & (y <= hi))), float(np.mean(hi - lo))
