"""View preprocessing: raw region views -> robust, bounded node features.

User data has heavy tails and artefacts (a 1.5 M-trip self-loop in one OD
row, a region with 800 POIs next to regions with 3). Every view goes through
the same generic steps, fitted on the training data and stored with the model
so ``embed`` reproduces them: log1p, centring/scaling by robust statistics
(median, IQR), clipping to +-CLIP. OD entries are winsorised at a fence far
above the bulk before anything else. Nothing here looks at region indices.

numpy only; the torch model receives the finished float32 arrays.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

CLIP = 5.0
# linear-scale count columns keep more of the tail (counts, not logs, are what count targets are linear in)
CLIP_LINEAR = 20.0
# OD entries above FENCE_FACTOR x the 99th percentile of the non-zero entries are capped there
FENCE_FACTOR = 10.0
FENCE_QUANTILE = 99.0
# distance bands (in units of the typical region spacing) for the N-independent mobility summary
MOBILITY_BANDS = (1.5, 3.0, 6.0, 12.0)

TABLE_VIEWS = ("poi", "landuse", "extra")


def table_view(data, view: str):
    """The (N, F) raw table of a tabular view, or None."""
    return {"poi": data.poi_counts, "landuse": data.landuse, "extra": data.extra}[view]


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def robust_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column centre (median) and scale (IQR/1.349, else std, else 1)."""
    x = np.asarray(x, dtype=np.float64)
    center = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    std = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, std)
    scale = np.where(scale > 1e-9, scale, 1.0)
    return center.astype(np.float32), scale.astype(np.float32)


def robust_apply(x: np.ndarray, center: np.ndarray, scale: np.ndarray, clip=CLIP) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float64) - center) / scale
    return np.clip(z, -np.asarray(clip), np.asarray(clip)).astype(np.float32)


def od_fence(m: sp.csr_matrix) -> float:
    """Winsorising fence for OD entries: far above the bulk, so only artefacts are capped."""
    if m is None or m.nnz == 0:
        return 1.0
    return float(FENCE_FACTOR * np.percentile(m.data, FENCE_QUANTILE, method="lower"))


def clipped_od(m: sp.csr_matrix, fence: float) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    np.minimum(m.data, fence, out=m.data)
    return m


def _table_raw(data, view: str, config) -> tuple[np.ndarray, np.ndarray]:
    """Raw columns before robust scaling, and each column's clip bound.

    Count views: log1p counts and log1p row total, plus (``linear_counts``)
    the counts and total themselves; extra fields: signed log1p.
    """
    x = np.asarray(table_view(data, view), dtype=np.float64)
    if view == "extra":
        return signed_log1p(x), np.full(x.shape[1], CLIP)
    x = np.concatenate([x, x.sum(1, keepdims=True)], axis=1)
    cols, clip = [np.log1p(x)], [np.full(x.shape[1], CLIP)]
    if config.linear_counts:
        cols.append(x)
        clip.append(np.full(x.shape[1], CLIP_LINEAR))
    return np.concatenate(cols, axis=1), np.concatenate(clip)


def _entropy_rows(m: sp.csr_matrix) -> np.ndarray:
    tot = np.asarray(m.sum(1)).ravel()
    out = np.zeros(m.shape[0])
    for i in range(m.shape[0]):
        v = m.data[m.indptr[i]:m.indptr[i + 1]]
        if tot[i] > 0 and v.size > 1:
            p = v / tot[i]
            out[i] = -(p * np.log(p)).sum() / np.log(m.shape[1])
    return out


def _mobility_summary_raw(m: sp.csr_matrix, dist_units: np.ndarray) -> np.ndarray:
    """N-independent per-region description of the OD table (out and in directions).

    log1p totals, self-trip share, normalised entropy, share of partners,
    flow-weighted mean log distance and the share of flow in distance bands.
    ``dist_units`` are distances divided by the typical region spacing.
    """
    n = m.shape[0]
    cols = []
    logd = np.log1p(dist_units)
    edges = (0.0,) + MOBILITY_BANDS + (np.inf,)
    for mat in (m, m.T.tocsr()):
        tot = np.asarray(mat.sum(1)).ravel()
        safe = np.where(tot > 0, tot, 1.0)
        cols.append(np.log1p(tot))
        cols.append(mat.diagonal() / safe)
        cols.append(_entropy_rows(mat))
        cols.append(np.diff(mat.indptr) / n)
        coo = mat.tocoo()
        d = dist_units[coo.row, coo.col]
        cols.append(np.bincount(coo.row, weights=coo.data * logd[coo.row, coo.col], minlength=n) / safe)
        for lo, hi in zip(edges[:-1], edges[1:]):
            w = coo.data * ((d >= lo) & (d < hi) & (coo.row != coo.col))
            cols.append(np.bincount(coo.row, weights=w, minlength=n) / safe)
    return np.stack(cols, axis=1)


def mobility_feature_dim(config, n: int) -> int:
    if config.mobility_features == "rows":
        return 2 * n
    return 2 * (5 + len(MOBILITY_BANDS) + 1) + (2 if config.linear_counts else 0)


def _mobility_raw(m: sp.csr_matrix, config, dist_units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if config.mobility_features == "rows":
        lm = m.copy()
        lm.data = np.log1p(lm.data)
        dense = lm.toarray()
        return np.concatenate([dense, dense.T], axis=1), np.full(2 * m.shape[0], CLIP)
    x = _mobility_summary_raw(m, dist_units)
    clip = np.full(x.shape[1], CLIP)
    if config.linear_counts:
        totals = np.stack([np.asarray(m.sum(1)).ravel(), np.asarray(m.sum(0)).ravel()], axis=1)
        x = np.concatenate([x, totals], axis=1)
        clip = np.concatenate([clip, [CLIP_LINEAR, CLIP_LINEAR]])
    return x, clip


def fit_stats(data, config, dist_units: np.ndarray) -> dict[str, np.ndarray]:
    """Preprocessing statistics fitted on the training data (stored with the model)."""
    stats: dict[str, np.ndarray] = {}
    for view in TABLE_VIEWS:
        if view in data.views():
            c, s = robust_fit(_table_raw(data, view, config)[0])
            stats[f"{view}.center"], stats[f"{view}.scale"] = c, s
    if "mobility" in data.views():
        fence = od_fence(data.mobility)
        stats["mobility.fence"] = np.array([fence], dtype=np.float32)
        raw, _ = _mobility_raw(clipped_od(data.mobility, fence), config, dist_units)
        if config.mobility_features == "rows":
            nz = raw[raw > 0]
            c = np.zeros(raw.shape[1], np.float32)
            s = np.full(raw.shape[1], float(nz.std()) if nz.size else 1.0, np.float32)
        else:
            c, s = robust_fit(raw)
        stats["mobility.center"], stats["mobility.scale"] = c, s
    return stats


def stat_shapes(schema: dict, config) -> dict[str, tuple]:
    """Shapes of the statistics for an input schema (to rebuild a model before loading weights)."""
    shapes = {}
    for view in schema["views"]:
        dim = schema["dims"][view]
        shapes[f"{view}.center"] = (dim,)
        shapes[f"{view}.scale"] = (dim,)
        if view == "mobility":
            shapes["mobility.fence"] = (1,)
    return shapes


def raw_dim(data, view: str, config) -> int:
    if view == "mobility":
        return mobility_feature_dim(config, data.n)
    x = table_view(data, view)
    if view == "extra":
        return x.shape[1]
    return (x.shape[1] + 1) * (2 if config.linear_counts else 1)


def features(data, stats: dict[str, np.ndarray], config, dist_units: np.ndarray) -> dict[str, np.ndarray]:
    """view -> (N, F) float32 features, using stored statistics."""
    out = {}
    for view in TABLE_VIEWS:
        if f"{view}.center" in stats:
            raw, clip = _table_raw(data, view, config)
            out[view] = robust_apply(raw, stats[f"{view}.center"], stats[f"{view}.scale"], clip)
    if "mobility.center" in stats:
        m = clipped_od(data.mobility, float(stats["mobility.fence"][0]))
        raw, clip = _mobility_raw(m, config, dist_units)
        out["mobility"] = robust_apply(raw, stats["mobility.center"], stats["mobility.scale"], clip)
    return out


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Row-cosine similarity (rows of zeros get similarity 0)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(norm > 0, norm, 1.0)
    return (u @ u.T).astype(np.float32)


def similarity_target(data, view: str) -> np.ndarray:
    """Self-supervised target for a tabular view: cosine similarity of the view vectors.

    Count views use their counts (as HAFusion's land-use target); extra fields
    use their robust z-scores so differently scaled fields weigh alike.
    """
    x = np.asarray(table_view(data, view), dtype=np.float64)
    if view == "extra":
        c, s = robust_fit(signed_log1p(x))
        x = robust_apply(signed_log1p(x), c, s)
    return cosine_matrix(x)


def od_target(data, fence: float) -> np.ndarray:
    """OD weights for the distribution losses: winsorised OD / its mean (MVURE/HAFusion)."""
    m = clipped_od(data.mobility, fence).toarray()
    mean = m.mean()
    return (m / (mean if mean > 0 else 1.0)).astype(np.float32)
