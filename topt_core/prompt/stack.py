"""Stage 2 as a stacked ensemble of routes, every choice made on inner splits of the training folds.

A route is one way to predict the target from what stage 2 knows about a region; each brings
signal the others lack, and each can be switched off (``PromptConfig.use_*``) for an ablation:

* ``embedding``: Ridge on the SREL embedding (the published protocol's model, alpha tuned);
* ``views``: Ridge on the embedding plus the region's own view values (log POI, land-use and OD
  totals), which the embedding has compressed away;
* ``text``: Ridge on the embedding plus the frozen language model's vector of the task prompt
  (task template + the region's description, with the user's TEXT_FIELDS and POI names), reduced
  by PCA: the description as read in the light of the task;
* ``prompt``: the Prompt4RE cross-attention head over the task template and the texts
  (``train.py``), when ``use_head`` allows (it costs minutes above a few thousand labels);
* ``interpolation``: the inverse-distance mean of the k nearest labelled training regions' labels
  (what QGIS's IDW interpolation gives a GIS user): a route of its own, so the inner splits see it
  and the stack cannot quietly do worse than it;
* ``+neighbours`` (a variant of each Ridge route): the route's prediction plus the inverse-distance
  mean residual of the k nearest *labelled training* regions (residual kriging): the labelled
  neighbourhood, which no embedding of the inputs can know. The residuals are taken on the scale the
  route was fitted on (log1p or original) and winsorised at the 10th/90th percentile of the training
  residuals, so one extreme region (a fifth of a city's check-ins) cannot carry its own misfit to
  its neighbours; and shrunk with the distance of the labelled neighbourhood (``reach_shrink``), so
  labels kilometres away do not speak for a region inside an unlabelled area. The interpolation
  route shrinks toward the training mean the same way.

Each route runs on the original scale and, for targets >= 0, on log1p (back-transformed). For
every outer fold (and the final model) the inner splits of its training rows give out-of-fold
predictions of every candidate: the Ridge penalty of each (route, scale, neighbours) is the one
with the lowest inner error, and a convex combination of the candidates (non-negative weights
summing to 1) is fitted on those inner predictions. The candidates are then refit on the whole
training fold and combined with those weights. Nothing sees the outer test labels; a test region's
neighbour term uses training labels only, and an unlabelled region's uses the labelled ones.

The guard (``PromptConfig.guard``): the stack's own inner error is measured honestly (weights fitted
without each inner split, scored on it), next to its best single baseline (Ridge on the embedding or
the interpolation, whichever the inner splits favour); the final weights are shrunk toward that
baseline by the share (0, 1/4, ..., 1) that minimises this honest inner error. Where the inner
evidence for the stack is weak (few labels, heavy tails, weights that change from split to split)
the share goes to the baseline, and the log says so.
"""
from __future__ import annotations

import numpy as np

from ..config import PromptConfig

ROUTES = ("embedding", "views", "text", "interpolation")
RESIDUAL_CLIP = (10.0, 90.0)     # percentiles of the training residuals the neighbour term is winsorised at
SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def view_features(data) -> np.ndarray | None:
    """(N, F) standardised view values: log1p of every count column and total, signed log of numeric
    fields, log1p OD out/in totals. Label-free; None when the data has no views (a layer alone)."""
    from .. import views
    from ..views import scaling

    cols = []
    for v in views.present(data):
        x = v.get(data)
        if v.kind == "od":
            cols.append(np.log1p(np.stack([np.asarray(x.sum(1)).ravel(), np.asarray(x.sum(0)).ravel()], 1)))
        elif getattr(v, "counts", False):
            x = np.asarray(x, dtype=float)
            cols.append(np.log1p(np.concatenate([x, x.sum(1, keepdims=True)], 1)))
        else:
            cols.append(scaling.signed_log1p(np.asarray(x, dtype=float)))
    if not cols:
        return None
    f = np.concatenate(cols, 1)
    sd = f.std(0)
    keep = sd > 1e-12
    return (f[:, keep] - f[:, keep].mean(0)) / sd[keep] if keep.any() else None


def text_features(vecs: np.ndarray, rank: int = 16) -> np.ndarray:
    """(N, rank) principal components of one text vector per region (label-free)."""
    v = np.asarray(vecs, dtype=np.float64)
    v = (v - v.mean(0)) / np.where(v.std(0) > 1e-9, v.std(0), 1.0)
    _, _, vt = np.linalg.svd(v, full_matrices=False)
    z = v @ vt[:min(rank, vt.shape[0])].T
    return z / (z.std() or 1.0)


def _transform(kind):
    if kind == "log1p":
        return np.log1p, (lambda z: np.expm1(np.clip(z, -50.0, 50.0)))
    return (lambda z: z), (lambda z: z)


def neighbour_weights(coords, labelled_rows, query_rows, k: int, with_reach: bool = False):
    """For each query row, its k nearest labelled rows (itself excluded) and inverse-distance weights.

    Returns (idx (Q, k) positions into labelled_rows, w (Q, k) summing to 1 per row); ``with_reach``:
    also (Q,) the weighted mean distance to those neighbours (how far the labelled neighbourhood is)."""
    from scipy.spatial import cKDTree

    c = np.asarray(coords, dtype=np.float64)
    lab = np.asarray(labelled_rows)
    q = len(query_rows)
    if q == 0 or len(lab) == 0:
        return np.zeros((q, k), dtype=np.int64), np.zeros((q, k))
    kk = min(k + 1, len(lab))
    dist, idx = cKDTree(c[lab]).query(c[query_rows], k=kk)
    dist, idx = dist.reshape(q, -1), idx.reshape(q, -1)
    if kk < k + 1:                                   # fewer labelled rows than k + 1: pad with weight 0
        pad = k + 1 - kk
        dist = np.concatenate([dist, np.full((q, pad), np.inf)], 1)
        idx = np.concatenate([idx, np.repeat(idx[:, :1], pad, 1)], 1)
    self_hit = lab[idx] == np.asarray(query_rows)[:, None]
    dist = np.where(self_hit, np.inf, dist)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    idx = np.take_along_axis(idx, order, 1)
    dist = np.take_along_axis(dist, order, 1)
    scale = np.median(dist[np.isfinite(dist)]) if np.isfinite(dist).any() else 1.0
    w = np.where(np.isfinite(dist), 1.0 / (dist + 0.5 * scale + 1e-9), 0.0)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    if with_reach:
        return idx, w, (np.where(np.isfinite(dist), dist, 0.0) * w).sum(1)
    return idx, w


def reach_shrink(coords, a, b, k: int):
    """(idx, w, s) for query rows ``b`` over labelled rows ``a``: s (Q,) in (0, 1] shrinks the labelled
    neighbourhood's say with its distance: 1 where the nearest labels are as close as they are among the
    labelled regions themselves, falling as L / d beyond. A region deep inside an
    unlabelled area (a spatial-blocks test fold, a new district) then keeps its route's own prediction
    instead of the residuals of labels kilometres away. ("As close" allows twice the median: under
    random folds the term is then whole almost everywhere.)"""
    idx, w, d_b = neighbour_weights(coords, a, b, k, with_reach=True)
    _, _, d_a = neighbour_weights(coords, a, a, k, with_reach=True)
    typical = 2.0 * float(np.median(d_a)) if len(d_a) else 0.0
    s = np.where(d_b > typical, typical / np.maximum(d_b, 1e-9), 1.0) if typical > 0 else np.ones(len(b))
    return idx, w, s


class Candidates:
    """The candidates' predictions, fitted on rows ``a`` and read on rows ``b`` (global row indices)."""

    def __init__(self, features: dict, y, coords, config: PromptConfig, transforms, alphas):
        self.features, self.y, self.coords = features, y, coords
        self.config, self.transforms, self.alphas = config, tuple(transforms), tuple(alphas)

    def keys(self):
        for route in self.features:
            for t in self.transforms:
                for nb in ((False, True) if self.config.use_neighbours else (False,)):
                    yield (route, t, nb)
        if self.config.use_interpolation:
            for t in self.transforms:
                yield ("interpolation", t, False)

    def predict(self, a, b, alpha_for=None, clip=True):
        """{(route, transform, neighbours, alpha): predictions on b}; ``alpha_for``: one alpha per key."""
        from sklearn.linear_model import Ridge

        out = {}
        nb_idx = nb_w = None
        if self.config.use_neighbours or self.config.use_interpolation:
            nb_idx, nb_w, reach = reach_shrink(self.coords, a, b, self.config.neighbours_k)
        if self.config.use_interpolation:
            for t in self.transforms:
                fwd, inv = _transform(t)
                ya = fwd(self.y[a])
                p = inv(ya.mean() + reach * ((ya[nb_idx] * nb_w).sum(1) - ya.mean()))
                p = np.clip(p, 0, None) if clip else p
                alphas = self.alphas if alpha_for is None else (alpha_for[("interpolation", t, False)],)
                for alpha in alphas:                      # no penalty: the same for every alpha
                    out[("interpolation", t, False, alpha)] = p
        for route, x in self.features.items():
            for t in self.transforms:
                fwd, inv = _transform(t)
                ya = fwd(self.y[a])
                alphas = self.alphas if alpha_for is None else sorted({alpha_for[(route, t, nb)] for nb in
                                                                      ((False, True) if self.config.use_neighbours
                                                                       else (False,))})
                for alpha in alphas:
                    m = Ridge(alpha=alpha).fit(x[a], ya)
                    zb = m.predict(x[b])
                    p = inv(zb)
                    out[(route, t, False, alpha)] = np.clip(p, 0, None) if clip else p
                    if self.config.use_neighbours:
                        resid = ya - m.predict(x[a])          # in-sample, training rows only, on the fitted scale
                        lo, hi = np.percentile(resid, RESIDUAL_CLIP) if len(resid) > 1 else (resid.min(), resid.max())
                        q = inv(zb + reach * (np.clip(resid, lo, hi)[nb_idx] * nb_w).sum(1))
                        out[(route, t, True, alpha)] = np.clip(q, 0, None) if clip else q
        return out


def convex_weights(preds: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 minimising the mean squared error of preds @ w (SLSQP)."""
    from scipy.optimize import minimize

    k = preds.shape[1]
    if k == 1:
        return np.ones(1)
    scale = float(np.mean(y ** 2)) or 1.0
    res = minimize(lambda w: np.mean((preds @ w - y) ** 2) / scale, np.full(k, 1.0 / k),
                   jac=lambda w: 2 * preds.T @ (preds @ w - y) / len(y) / scale,
                   bounds=[(0.0, 1.0)] * k, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
                   method="SLSQP", options={"maxiter": 200, "ftol": 1e-10})
    w = np.clip(res.x, 0, None)
    return w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)


BASELINE = ("embedding", "none", False)      # the published protocol's Ridge on the embedding


def choose_group(cands: Candidates, tr, splits, extra_inner=None, base_alpha: float = 1.0):
    """Alpha per candidate and the stacking weights, from inner out-of-fold predictions of ``tr``.

    The stack's own inner error is also measured (weights fitted leaving each inner split out, scored
    on it) against the published Ridge (alpha ``base_alpha``), for the log and the report. (Falling
    back to that Ridge whenever the gain was within one standard error was tried: on the Manhattan
    tuning seeds it lost 0.01-0.04 R², the per-fold switching adding more noise than it removed.)
    ``extra_inner``: {key: inner OOF predictions (len tr)} of routes trained elsewhere (the head).
    Returns (alpha per key, {key: weight}, {"gain": mean inner MSE gain over that Ridge, "se": ...})."""
    y = cands.y
    splits = [(itr, iva) for itr, iva in splits if len(itr) >= 2 and len(iva) >= 1]
    if not splits or not any(True for _ in cands.keys()):   # too few labels to choose anything: the first route
        keys = list(cands.keys()) or list(extra_inner or {})
        first = keys[0]
        return {k: cands.alphas[0] for k in cands.keys()}, {first: 1.0}, {"gain": None, "se": None}
    inner = {}
    for itr, iva in splits:
        for key, p in cands.predict(tr[itr], tr[iva]).items():
            inner.setdefault(key, np.zeros(len(tr)))[iva] = p
    alpha_for, cols = {}, {}
    for key in cands.keys():
        best = choose_alpha([inner[key + (al,)] for al in cands.alphas], y[tr], splits, cands.alphas, base_alpha)
        alpha_for[key] = best
        cols[key] = inner[key + (best,)]
    cols.update(extra_inner or {})
    keys = list(cols)
    A = np.stack([cols[k] for k in keys], 1)
    yt = y[tr]
    base_key = BASELINE + (base_alpha,)
    if base_key not in inner:                              # the embedding route is off: no comparison
        return alpha_for, dict(zip(keys, convex_weights(A, yt))), {"gain": None, "se": None}
    base = inner[base_key]
    honest = np.zeros(len(tr))
    for _, iva in splits:                                  # the stack's own inner error, honestly
        rest = np.setdiff1d(np.arange(len(tr)), iva)
        honest[iva] = A[iva] @ convex_weights(A[rest], yt[rest])
    seen = np.concatenate([iva for _, iva in splits])
    d = np.asarray([np.mean((honest[iva] - yt[iva]) ** 2) - np.mean((base[iva] - yt[iva]) ** 2)
                    for _, iva in splits])
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    weights = dict(zip(keys, convex_weights(A, yt)))
    info = {"gain": float(-d.mean()), "se": se, "shrink": 0.0, "baseline": None}
    if cands.config.guard:
        weights, info["shrink"], info["baseline"] = _guard(weights, cols, honest, yt, seen)
    return alpha_for, weights, info


def baselines(cols: dict) -> list:
    """The single baselines among the candidates: Ridge on the embedding and the interpolation (original scale)."""
    return [k for k in cols if k[2] is False and k[1] == "none" and k[0] in ("embedding", "interpolation")]


def _guard(weights, cols, honest, yt, seen):
    """Shrink the stack's weights toward its best single baseline by the share that minimises the honest
    inner error (stack weights fitted without each inner split). Returns (weights, share, baseline key)."""
    cands = baselines(cols)
    if not cands:
        return weights, 0.0, None
    mse = lambda p: float(np.mean((p[seen] - yt[seen]) ** 2))  # noqa: E731
    best = min(cands, key=lambda k: mse(cols[k]))
    share = min(SHRINK_GRID, key=lambda s: (mse((1 - s) * honest + s * cols[best]), s))
    if share == 0.0:
        return weights, 0.0, best
    out = {k: (1 - share) * w for k, w in weights.items()}
    out[best] = out.get(best, 0.0) + share
    return out, float(share), best


def choose_alpha(preds, yt, splits, alphas, default: float = 1.0):
    """The Ridge penalty of one candidate: the default (the published alpha) unless another beats it on
    the inner splits by more than one standard error of the paired per-split difference. A plain argmin
    over a few inner splits picks a 30-100x penalty on some spatial folds and loses 0.08 R² to the
    default on Chicago tracts; the rule keeps the choice where the evidence is."""
    per = np.array([[np.mean((p[iva] - yt[iva]) ** 2) for _, iva in splits] for p in preds])   # (alphas, splits)
    alphas = list(alphas)
    best = min(range(len(alphas)), key=lambda i: (per[i].mean(), -alphas[i]))
    if default not in alphas or per.shape[1] < 2:
        return alphas[best]
    d = per[best] - per[alphas.index(default)]
    se = d.std(ddof=1) / np.sqrt(len(d))
    return alphas[best] if d.mean() < -se else default


def combine(cands: Candidates, a, b, alpha_for, weights, extra=None):
    """The weighted prediction on rows b from candidates refit on rows a (``extra``: {key: preds on b})."""
    preds = cands.predict(a, b, alpha_for)
    total = np.zeros(len(b))
    for key, w in weights.items():
        if w <= 0:
            continue
        p = extra[key] if extra is not None and key in extra else preds[key + (alpha_for[key],)]
        total += w * p
    return total
