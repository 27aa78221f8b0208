"""The mobility view: an origin-destination table of trips between regions (sparse N x N).

Node features (``summary``, N-independent): per direction the log total, the self-trip share,
the normalised entropy, the share of partners, the flow-weighted mean log distance and the
share of flow in distance bands; ``rows`` feeds the OD rows themselves (ties a model to N).
OD entries are winsorised at a fence far above the bulk first, so a 1.5 M-trip artefact does
not dominate. Self-supervised target: the OD distributions both ways (MVURE/HAFusion).
The view also gives the structural encodings of stage 1: in/out strength (centrality) and
the scaled log flow between two regions (attention bias).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import joins
from ..errors import ToptDataError
from . import scaling, words
from .base import View
from .inputs import Param, Rows, Source, report

# OD entries above FENCE_FACTOR x the 99th percentile of the non-zero entries are capped there
FENCE_FACTOR = 10.0
FENCE_QUANTILE = 99.0
# distance bands (in units of the typical region spacing) for the N-independent mobility summary
MOBILITY_BANDS = (1.5, 3.0, 6.0, 12.0)


def od_fence(m: sp.csr_matrix) -> float:
    """Winsorising fence for OD entries: far above the bulk, so only artefacts are capped."""
    if m is None or m.nnz == 0:
        return 1.0
    return float(FENCE_FACTOR * np.percentile(m.data, FENCE_QUANTILE, method="lower"))


def clipped_od(m: sp.csr_matrix, fence: float) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    np.minimum(m.data, fence, out=m.data)
    return m


def _entropy_rows(m: sp.csr_matrix) -> np.ndarray:
    tot = np.asarray(m.sum(1)).ravel()
    out = np.zeros(m.shape[0])
    for i in range(m.shape[0]):
        v = m.data[m.indptr[i]:m.indptr[i + 1]]
        if tot[i] > 0 and v.size > 1:
            p = v / tot[i]
            out[i] = -(p * np.log(p)).sum() / np.log(m.shape[1])
    return out


def summary_raw(m: sp.csr_matrix, geometry) -> np.ndarray:
    """N-independent per-region description of the OD table (out and in directions).

    ``geometry.units(rows, cols)`` gives pair distances in units of the typical region spacing;
    only the observed pairs are measured, so nothing here is N x N.
    """
    n = m.shape[0]
    cols = []
    edges = (0.0,) + MOBILITY_BANDS + (np.inf,)
    for mat in (m, m.T.tocsr()):
        tot = np.asarray(mat.sum(1)).ravel()
        safe = np.where(tot > 0, tot, 1.0)
        cols.append(np.log1p(tot))
        cols.append(mat.diagonal() / safe)
        cols.append(_entropy_rows(mat))
        cols.append(np.diff(mat.indptr) / n)
        coo = mat.tocoo()
        d = geometry.units(coo.row, coo.col) if coo.nnz else np.zeros(0)
        cols.append(np.bincount(coo.row, weights=coo.data * np.log1p(d), minlength=n) / safe)
        for lo, hi in zip(edges[:-1], edges[1:]):
            w = coo.data * ((d >= lo) & (d < hi) & (coo.row != coo.col))
            cols.append(np.bincount(coo.row, weights=w, minlength=n) / safe)
    return np.stack(cols, axis=1)


def feature_dim(config, n: int) -> int:
    if config.mobility_features == "rows":
        return 2 * n
    return 2 * (5 + len(MOBILITY_BANDS) + 1) + (2 if config.linear_counts else 0)


def _raw(m: sp.csr_matrix, config, geometry) -> tuple[np.ndarray, np.ndarray]:
    if config.mobility_features == "rows":
        lm = m.copy()
        lm.data = np.log1p(lm.data)
        dense = lm.toarray()
        return np.concatenate([dense, dense.T], axis=1), np.full(2 * m.shape[0], scaling.CLIP)
    x = summary_raw(m, geometry)
    clip = np.full(x.shape[1], scaling.CLIP)
    if config.linear_counts:
        totals = np.stack([np.asarray(m.sum(1)).ravel(), np.asarray(m.sum(0)).ravel()], axis=1)
        x = np.concatenate([x, totals], axis=1)
        clip = np.concatenate([clip, [scaling.CLIP_LINEAR, scaling.CLIP_LINEAR]])
    return x, clip


def strength(data, fence: float) -> np.ndarray:
    """(N, 2) log1p out- and in-strength of the winsorised OD table (centrality encoding)."""
    m = clipped_od(data.mobility, fence)
    return np.log1p(np.stack([np.asarray(m.sum(1)).ravel(), np.asarray(m.sum(0)).ravel()], axis=1))


def strength_buckets(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N, 2) bucket of each region's out/in strength among the training quantile edges."""
    return np.stack([np.searchsorted(edges[0], s[:, 0], side="right"),
                     np.searchsorted(edges[1], s[:, 1], side="right")], axis=1).astype(np.int64)


def centrality_inputs(data, stats) -> tuple[float, np.ndarray]:
    """What the model input takes from this view beyond its features: the OD fence fixed at training and
    each region's (out, in) strength bucket for the centrality encoding (the statistics stay this view's)."""
    fence = float(stats["mobility.fence"][0])
    return fence, strength_buckets(strength(data, fence), stats["strength.edges"])


def symmetric_flow(data, fence: float) -> sp.csr_matrix:
    """The winsorised flow both ways, i + j and j + i, as a sparse matrix: what the attention modes read
    for the flow bias and the sparse mode's OD partners (``AttentionMode.pair_inputs``)."""
    m = clipped_od(data.mobility, fence)
    return (m + m.T).tocsr()


def symmetric_log_flow(data, fence: float) -> sp.csr_matrix:
    """log1p of ``symmetric_flow`` with its zeros dropped (the flow bias's scale statistic)."""
    s = symmetric_flow(data, fence)
    s.eliminate_zeros()
    s.sort_indices()
    s.data = np.log1p(s.data)
    return s


def od_target(data, fence: float) -> np.ndarray:
    """OD weights for the distribution losses: winsorised OD / its mean (MVURE/HAFusion), dense (N, N)."""
    m = clipped_od(data.mobility, fence).toarray()
    mean = m.mean()
    return (m / (mean if mean > 0 else 1.0)).astype(np.float32)


def from_od(rec):
    """The front doors' OD rows: an OD table of region ids, or OD lines located in regions."""
    weights = rec.values.get("weight")
    if "origin" in rec.values:
        m, rep = od_from_ids(rec.values["origin"], rec.values["destination"], weights, rec.region_ids, rec.id_field)
    else:
        m, rep = od_matrix(rec.index, rec.dest, weights, rec.n)
    return Rows(m, warnings=report(rep), infos=[f"Mobility: {rep.used} of {rep.records} OD records, {m.sum():.0f} "
                                                f"trips, {m.nnz} region pairs."])


class MobilityView(View):
    name, label, kind, facet_rank = "mobility", "OD counts", "od", 30
    ssl_decoders = ("source", "target")
    sources = (Source("od", (
        Param("MOBILITY", "--od", "layer", "Mobility: OD lines or OD table",
              "OD lines (first vertex = origin, last = destination) or a table of region ids."),
        Param("MOBILITY_ORIGIN_FIELD", "--od-origin", "field", "OD table: origin region id field",
              "For an OD table: the origin region id. Set both id fields, or neither.", role="origin"),
        Param("MOBILITY_DESTINATION_FIELD", "--od-destination", "field", "OD table: destination region id field",
              "For an OD table: the destination region id.", role="destination"),
        Param("MOBILITY_COUNT_FIELD", "--od-count", "field", "Trip count field (empty: 1 trip per record)",
              "Trips per record. Empty: one trip per record.", role="weight", numeric=True)),
        from_od, noun="OD line"),)

    def get(self, data):
        return data.mobility

    def set(self, data, values, columns=()) -> None:
        data.mobility = values

    def validate(self, data, n: int) -> None:
        if data.mobility is None:
            return
        m = sp.csr_matrix(data.mobility, dtype=float)
        if m.shape != (n, n):
            raise ToptDataError(f"The OD matrix has shape {m.shape}; expected ({n}, {n}) for {n} regions.")
        if m.nnz and not np.isfinite(m.data).all():
            raise ToptDataError("The OD counts contain NaN or infinite values; expected finite trip counts. "
                                "Remove or fix those rows.")
        if m.nnz and (m.data < 0).any():
            raise ToptDataError("The OD counts contain negative values; expected trip counts >= 0. "
                                "Remove or fix those rows.")
        m.eliminate_zeros()
        data.mobility = m

    def subset(self, data, rows, out) -> None:
        if data.mobility is not None:
            out.mobility = sp.csr_matrix(data.mobility)[rows][:, rows].tocsr()

    def to_arrays(self, data):
        if data.mobility is None:
            return {}, {}
        m = sp.coo_matrix(data.mobility)
        return {"mobility.row": m.row.astype(np.int64), "mobility.col": m.col.astype(np.int64),
                "mobility.data": m.data.astype(np.float64)}, {}

    def from_arrays(self, data, arrays, meta, n):
        if "mobility.row" in arrays:
            data.mobility = sp.csr_matrix((arrays["mobility.data"], (arrays["mobility.row"],
                                                                     arrays["mobility.col"])), shape=(n, n))

    # -- stage 1 -------------------------------------------------------------------------------
    def feature_dim(self, data, config) -> int:
        return feature_dim(config, data.n)

    def fit_stats(self, data, config, geometry) -> dict:
        fence = od_fence(data.mobility)
        raw, _ = _raw(clipped_od(data.mobility, fence), config, geometry)
        if config.mobility_features == "rows":
            nz = raw[raw > 0]
            c = np.zeros(raw.shape[1], np.float32)
            s = np.full(raw.shape[1], float(nz.std()) if nz.size else 1.0, np.float32)
        else:
            c, s = scaling.robust_fit(raw)
        stats = {"mobility.fence": np.array([fence], dtype=np.float32), "mobility.center": c, "mobility.scale": s}
        qs = np.linspace(0, 100, config.strength_buckets + 1)[1:-1]
        stats["strength.edges"] = np.percentile(strength(data, fence), qs, axis=0).T.astype(np.float32)
        lf = symmetric_log_flow(data, fence).data
        nz = lf[lf > 0]
        stats["flow.scale"] = np.array([float(nz.std()) if nz.size and nz.std() > 0 else 1.0], np.float32)
        return stats

    def stat_shapes(self, dim: int, config) -> dict:
        return {"mobility.center": (dim,), "mobility.scale": (dim,), "mobility.fence": (1,),
                "strength.edges": (2, config.strength_buckets - 1), "flow.scale": (1,)}

    def features(self, data, stats, config, geometry, schema) -> np.ndarray:
        m = clipped_od(data.mobility, float(stats["mobility.fence"][0]))
        raw, clip = _raw(m, config, geometry)
        return scaling.robust_apply(raw, stats["mobility.center"], stats["mobility.scale"], clip)

    def ssl_target(self, data, stats, config=None):
        """The winsorised OD table: its distributions both ways are the target (the mode builds the loss)."""
        from ..targets import FlowTarget

        return FlowTarget(clipped_od(data.mobility, float(stats["mobility.fence"][0])))

    def ssl_loss(self, decoders, emb, target):
        return target(decoders["source"](emb), decoders["target"](emb))

    # -- stage 2 -------------------------------------------------------------------------------
    def describe(self, data) -> list[str]:
        """Outgoing/incoming trips and their rank among all regions (1 = busiest)."""
        m, n = data.mobility, data.n
        out_v = np.asarray(m.sum(1)).reshape(-1)
        in_v = np.asarray(m.sum(0)).reshape(-1)
        r_out, r_in = words.rank(out_v), words.rank(in_v)
        l_out, l_in = words.levels(out_v), words.levels(in_v)
        diag = m.diagonal()
        sent = []
        for i in range(n):
            s = (f"Mobility: {words.fmt(out_v[i])} trips out ({l_out[i]}, rank {r_out[i]} of {n}), "
                 f"{words.fmt(in_v[i])} trips in ({l_in[i]}, rank {r_in[i]} of {n})")
            if diag[i] > 0:
                s += f", {words.fmt(diag[i])} within"
            sent.append(s + ".")
        return sent


VIEW = MobilityView()


def od_matrix(origin_idx, dest_idx, weights, n: int, unknown_examples=None):
    """Sparse OD matrix ``M[i, j]`` = trips from region i to region j.

    Args:
        origin_idx, dest_idx: (R,) region rows, -1 = outside / unknown id (dropped, counted).
        weights: (R,) trip counts, or None for one trip per record.
        n: number of regions.
        unknown_examples: optional list of a few offending ids, carried into the report.

    Returns:
        (csr (N, N) float, report)
    """
    o = np.asarray(origin_idx, dtype=np.int64).reshape(-1)
    d = np.asarray(dest_idx, dtype=np.int64).reshape(-1)
    if o.shape != d.shape:
        raise ToptDataError(f"{o.size} origins but {d.size} destinations; expected one of each per OD record.")
    w, ok = joins.clean_weights(weights, len(o), "OD count field")
    rep = joins.ViewReport("mobility", records=len(o), examples=list(unknown_examples or []))
    known = (o >= 0) & (o < n) & (d >= 0) & (d < n)
    rep.outside = int((~known).sum())
    rep.bad_weight = int((known & ~ok).sum())
    use = known & ok
    rep.zero_weight = int((use & (w == 0)).sum())
    rep.used = int(use.sum())
    rep.self_loops = int((use & (o == d)).sum())
    m = sp.coo_matrix((w[use], (o[use], d[use])), shape=(n, n)).tocsr()   # duplicates are summed
    m.sum_duplicates()
    m.eliminate_zeros()
    return m, rep


def od_from_ids(origins, destinations, weights, region_ids, id_field: str = ""):
    """OD matrix from an OD table of region ids (both front doors): (csr, report).

    Ids are matched as canonical strings ("12", 12 and 12.0 are one region). When no record
    matches, the run is refused with examples and, if the ids look zero-padded or unpadded
    against the region ids, says so.
    """
    o, d = joins.index_of(origins, region_ids), joins.index_of(destinations, region_ids)
    unknown = joins.unknown_examples((origins, destinations), (o, d))
    m, rep = od_matrix(o, d, weights, len(region_ids), unknown_examples=unknown)
    hint = joins.padding_hint(unknown, region_ids)
    if hint:
        rep.hints.append(hint)
    if rep.outside and rep.outside == rep.records:
        where = f"REGION_ID_FIELD {id_field!r}" if id_field and id_field != "(feature id)" else "the region feature ids"
        raise ToptDataError(
            f"None of the {rep.records} OD records has origin and destination among the region ids "
            f"(e.g. {unknown[:3]} vs region ids {list(region_ids[:3])}); expected ids from {where}. "
            + (f"{hint} " if hint else "") + "Set REGION_ID_FIELD (--region-id) to the field the OD table refers to.")
    return m, rep
