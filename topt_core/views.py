"""Building the region views from joined records (pure numpy/scipy).

Both front doors call these after their own spatial join, so QGIS layers
(``processing_provider/layers.py``) and files (``topt_core.io``) give the same
``RegionData`` for the same input:

* the adapter locates every record in a region (``region_index``: row of the
  region, ``-1`` = outside every region / unknown id);
* these functions count, weigh, validate and report.

Every function returns its matrix plus a ``ViewReport`` that says what was
dropped and why; the adapters turn its ``messages()`` into warnings. Values
that cannot be meant as counts (negative, absurdly large) raise
``ToptDataError`` with what was wrong, what was expected and how to fix it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import ToptDataError

#: weights/counts above this are refused: no OD table, POI or land-use amount is that large,
#: it is almost always an id, a timestamp or a no-data sentinel read as a number
MAX_WEIGHT = 1e12


@dataclass
class ViewReport:
    """What a view builder dropped, for the user's log."""

    view: str
    records: int = 0            # records given
    used: int = 0               # records that went into the matrix
    outside: int = 0            # not inside any region / id not among the regions
    null_key: int = 0           # null category / class
    bad_weight: int = 0         # null or NaN weight (record dropped)
    zero_weight: int = 0        # weight 0 (kept, contributes nothing)
    self_loops: int = 0         # OD records with origin == destination (kept)
    examples: list = field(default_factory=list)   # a few unknown ids, for the message

    def messages(self) -> list[str]:
        out = []
        what = {"poi": "POI points", "mobility": "OD records", "landuse": "land-use pieces"}.get(self.view,
                                                                                             "records")
        if self.outside:
            where = ("have an origin or destination id that is not a region id"
                     if self.view == "mobility" and self.examples else "lie outside every region")
            ex = f" (e.g. {', '.join(map(str, self.examples[:5]))})" if self.examples else ""
            out.append(f"{self.outside} of {self.records} {what} {where}{ex}; they were left out.")
        if self.null_key:
            key = {"poi": "category", "landuse": "class"}.get(self.view, "key")
            out.append(f"{self.null_key} of {self.records} {what} have an empty {key}; they were left out.")
        if self.view == "mobility" and self.used and self.self_loops == self.used:
            out.append(f"All {self.used} OD records used start and end in the same region; the mobility view "
                       "has no flows between regions. Check MOBILITY_ORIGIN_FIELD/MOBILITY_DESTINATION_FIELD.")
        if self.bad_weight:
            out.append(f"{self.bad_weight} of {self.records} {what} have an empty or non-numeric weight; "
                       "they were left out.")
        return out


# -- ids --------------------------------------------------------------------------------------------

_INTEGRAL_TEXT = re.compile(r"^-?[0-9]+\.0+$")


def id_string(value) -> str | None:
    """Canonical string form of a region id: 12, 12.0, "12" -> "12"; None/NaN/"" -> None."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    s = str(value).strip()
    if s == "" or s.upper() in ("NULL", "NONE", "NAN"):
        return None
    if _INTEGRAL_TEXT.match(s):     # "12.0" (a CSV/text column) means the same region as 12 and "12"
        s = s.split(".", 1)[0]
    return s


def normalise_ids(values) -> np.ndarray:
    """Region ids as canonical strings; raises on null ids."""
    out = [id_string(v) for v in values]
    bad = [i for i, s in enumerate(out) if s is None]
    if bad:
        raise ToptDataError(f"{len(bad)} region(s) have an empty id (e.g. feature rows {bad[:5]}); expected "
                            "a value on every region. Fill the id field or leave REGION_ID_FIELD empty to "
                            "use feature ids.")
    return np.asarray(out, dtype=object).astype(str)


def index_of(values, region_ids) -> np.ndarray:
    """Row index of each value among ``region_ids`` (canonical strings); -1 where unknown or null."""
    lookup = {str(r): i for i, r in enumerate(region_ids)}
    return np.asarray([lookup.get(id_string(v), -1) if id_string(v) is not None else -1 for v in values],
                      dtype=np.int64)


# -- weights ----------------------------------------------------------------------------------------

def clean_weights(weights, count: int, what: str):
    """Weights as float array (ones if None) and a mask of usable rows.

    NaN/None -> row unusable (reported); negative or > MAX_WEIGHT -> ToptDataError.
    """
    if weights is None:
        return np.ones(count, dtype=float), np.ones(count, dtype=bool)
    w = np.asarray([np.nan if v is None else v for v in weights], dtype=object)
    try:
        w = w.astype(float)
    except (TypeError, ValueError):
        bad = []
        for v in w:
            try:
                float(v)
            except (TypeError, ValueError):
                bad.append(v)
        raise ToptDataError(f"The {what} contains non-numeric values (e.g. {bad[:3]}); expected numbers >= 0. "
                            "Choose a numeric field.") from None
    if w.shape != (count,):
        raise ToptDataError(f"{w.shape[0]} {what} values for {count} records; expected one per record.")
    ok = np.isfinite(w)
    if (w[ok] < 0).any():
        neg = w[ok][w[ok] < 0]
        raise ToptDataError(f"The {what} has {len(neg)} negative value(s) (e.g. {neg[:3].tolist()}); expected "
                            "counts or weights >= 0. Fix those records or choose another field.")
    if (w[ok] > MAX_WEIGHT).any():
        big = w[ok][w[ok] > MAX_WEIGHT]
        raise ToptDataError(f"The {what} has {len(big)} value(s) above {MAX_WEIGHT:.0e} (e.g. {big[:3].tolist()}); "
                            "expected trip counts or weights. It looks like an id, a timestamp or a no-data "
                            "code; choose the count field or clean those records.")
    return w, ok


# -- views ------------------------------------------------------------------------------------------

def _keys(values):
    """Category/class values as strings; None where null."""
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            out.append(None)
            continue
        s = id_string(v)
        out.append(s)
    return out


def poi_counts(region_index, categories, n: int, categories_order=None, weights=None):
    """POI counts per region and category.

    Args:
        region_index: (P,) region row of each point, -1 = outside every region.
        categories: (P,) category value of each point (None/NaN/"" = null).
        n: number of regions.
        categories_order: optional fixed category list (e.g. a saved model's); points in
            other categories are counted as null. Default: sorted distinct categories.
        weights: optional (P,) weight per point (default 1).

    Returns:
        (counts (N, C) float, category names, n_outside, n_null_category, report)
    """
    idx = np.asarray(region_index, dtype=np.int64).reshape(-1)
    keys = _keys(categories)
    if len(keys) != len(idx):
        raise ToptDataError(f"{len(keys)} categories for {len(idx)} points; expected one per point.")
    w, ok = clean_weights(weights, len(idx), "POI weight field")
    rep = ViewReport("poi", records=len(idx))
    null = np.asarray([k is None for k in keys], dtype=bool)
    names = list(categories_order) if categories_order is not None else sorted({k for k in keys if k is not None})
    col = {c: j for j, c in enumerate(names)}
    cat = np.asarray([col.get(k, -1) if k is not None else -1 for k in keys], dtype=np.int64)
    null |= cat < 0
    inside = (idx >= 0) & (idx < n)
    rep.outside = int((~inside).sum())
    rep.null_key = int((inside & null).sum())
    rep.bad_weight = int((inside & ~null & ~ok).sum())
    use = inside & ~null & ok
    rep.used = int(use.sum())
    counts = np.zeros((n, len(names)), dtype=float)
    np.add.at(counts, (idx[use], cat[use]), w[use])
    return counts, names, rep.outside, rep.null_key, rep


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
    w, ok = clean_weights(weights, len(o), "OD count field")
    rep = ViewReport("mobility", records=len(o), examples=list(unknown_examples or []))
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


def landuse_shares(region_idx, class_values, areas, n: int, region_areas=None, classes_order=None):
    """Area-weighted land-use composition per region from intersection pieces.

    Args:
        region_idx: (K,) region row of each intersection piece (-1 = outside).
        class_values: (K,) land-use class of each piece (None = null).
        areas: (K,) area of each piece in square metres.
        n: number of regions.
        region_areas: (N,) region areas; when given, each value is the share of the
            region's area (rows sum to the covered fraction, at most 1); when None, the
            share of the region's land-use-covered area (rows sum to 1, or 0 if uncovered).
        classes_order: optional fixed class list.

    Returns:
        (shares (N, L) float, class names, report)
    """
    idx = np.asarray(region_idx, dtype=np.int64).reshape(-1)
    keys = _keys(class_values)
    a, ok = clean_weights(areas, len(idx), "land-use piece area")
    rep = ViewReport("landuse", records=len(idx))
    names = list(classes_order) if classes_order is not None else sorted({k for k in keys if k is not None})
    col = {c: j for j, c in enumerate(names)}
    cat = np.asarray([col.get(k, -1) if k is not None else -1 for k in keys], dtype=np.int64)
    inside = (idx >= 0) & (idx < n)
    rep.outside = int((~inside).sum())
    rep.null_key = int((inside & (cat < 0)).sum())
    use = inside & (cat >= 0) & ok
    rep.used = int(use.sum())
    amount = np.zeros((n, len(names)), dtype=float)
    np.add.at(amount, (idx[use], cat[use]), a[use])
    if region_areas is not None:
        denom = np.asarray(region_areas, dtype=float).reshape(-1)
        if denom.shape != (n,):
            raise ToptDataError(f"{denom.size} region areas for {n} regions; expected one per region.")
        denom = np.maximum(denom, amount.sum(1))    # rounding: a share never exceeds 1
    else:
        denom = amount.sum(1)
    shares = np.divide(amount, denom[:, None], out=np.zeros_like(amount), where=denom[:, None] > 0)
    return shares, names, rep


def numeric_table(columns: dict, n: int, what: str = "land-use field"):
    """(N, K) table from per-region numeric fields; null -> 0 (counted); negative -> error.

    Returns (table, names, n_null) where n_null counts null cells set to 0.
    """
    names = list(columns)
    table = np.zeros((n, len(names)), dtype=float)
    n_null = 0
    for j, name in enumerate(names):
        vals = list(columns[name])
        if len(vals) != n:
            raise ToptDataError(f"{what} '{name}' has {len(vals)} values for {n} regions; expected one per region.")
        w, ok = clean_weights(vals, n, f"{what} '{name}'")
        n_null += int((~ok).sum())
        table[:, j] = np.where(ok, w, 0.0)
    return table, names, n_null


def adjacency_from_pairs(i, j, n: int) -> np.ndarray:
    """(2, E) undirected, deduplicated neighbour edges from candidate pairs (self-pairs dropped)."""
    from .spatial import symmetrise

    i = np.asarray(i, dtype=np.int64).reshape(-1)
    j = np.asarray(j, dtype=np.int64).reshape(-1)
    if i.shape != j.shape:
        raise ToptDataError(f"{i.size} vs {j.size} adjacency endpoints; expected pairs.")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ToptDataError(f"adjacency pairs reference regions outside [0, {n}).")
    keep = i != j
    return symmetrise(np.stack([i[keep], j[keep]]), n)


def subset_region_data(data, rows):
    """The regions ``rows`` (in that order) of ``data``: views, OD and adjacency restricted and renumbered.

    Used to describe the regions of a layer with the views stored in a model folder (matched by id).
    """
    from dataclasses import replace

    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    n = data.n
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ToptDataError(f"region rows must lie in [0, {n}).")
    take = lambda a: None if a is None else np.asarray(a)[rows]  # noqa: E731
    mobility = None
    if data.mobility is not None:
        m = sp.csr_matrix(data.mobility)
        mobility = m[rows][:, rows].tocsr()
    adjacency = None
    if data.adjacency is not None:
        new = np.full(n, -1, dtype=np.int64)
        new[rows] = np.arange(rows.size)
        a = np.asarray(data.adjacency, dtype=np.int64).reshape(2, -1)
        a = new[a]
        adjacency = a[:, (a >= 0).all(0)]
    targets = {k: np.asarray(v)[rows] for k, v in (data.targets or {}).items()}
    return replace(data, region_ids=take(data.region_ids), centroids=take(data.centroids), areas=take(data.areas),
                   poi_counts=take(data.poi_counts), landuse=take(data.landuse), mobility=mobility,
                   extra=take(data.extra), adjacency=adjacency, targets=targets, names=take(data.names))
