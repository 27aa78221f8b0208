"""The POI view: points of interest counted per region and category."""
from __future__ import annotations

import numpy as np

from .. import joins
from ..errors import ToptDataError
from .base import TableView
from .inputs import Param, Records, Rows, Source, report


def from_points(rec: Records) -> Rows:
    """The front doors' POI rows: points located in regions, counted per category (+ names per region)."""
    counts, names, _, _, rep = count(rec.index, rec.values["category"], rec.n)
    rows = Rows(counts, names, warnings=report(rep),
                infos=[f"POIs: {rep.used} of {rep.records} points counted in {len(names)} categories."])
    if "name" in rec.values:
        rows.texts["POIs"] = names_per_region(rec.index, rec.values["name"], rec.n)
    return rows


class PoiView(TableView):
    name, label, facet_rank = "poi", "POI counts", 10
    attr, columns_attr, column_prefix, columns_label = "poi_counts", "poi_categories", "poi", "POI categories"
    unit, facet_lead = "points of interest", "Included POIs"
    sources = (Source("points", (
        Param("POIS", "--pois", "layer", "POIs (points)", "Points; each is counted in the region that contains it.",
              geometry="point"),
        Param("POI_CATEGORY_FIELD", "--poi-category", "field", "POI category field",
              "The category of each point (e.g. amenity). Required with POIs.", role="category", required=True,
              holds="each point's category (e.g. 'amenity' or 'category')"),
        Param("POI_NAME_FIELD", "--poi-name", "field", "POI name field (for descriptions)",
              "Names of the points (e.g. OSM name); each region's most frequent ones join its description.",
              role="name", advanced=True)),
        from_points, noun="POI"),)


VIEW = PoiView()


def count(region_index, categories, n: int, categories_order=None, weights=None):
    """POI counts per region and category, from each point's region row (the adapters' spatial join).

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
    keys = joins.keys(categories)
    if len(keys) != len(idx):
        raise ToptDataError(f"{len(keys)} categories for {len(idx)} points; expected one per point.")
    w, ok = joins.clean_weights(weights, len(idx), "POI weight field")
    rep = joins.ViewReport("poi", records=len(idx))
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


def names_per_region(region_index, names, n: int, limit: int = 6) -> np.ndarray:
    """(N,) strings: the ``limit`` most frequent names of the POIs inside each region ("" when none),
    for the region descriptions of stage 2 (e.g. OSM ``name``: "Penn Station, Madison Square Garden")."""
    from collections import Counter

    idx = np.asarray(region_index, dtype=np.int64).reshape(-1)
    per = [Counter() for _ in range(n)]
    for i, v in zip(idx, names):
        s = "" if v is None else str(v).strip()
        if 0 <= i < n and s and s.upper() != "NULL":
            per[i][s] += 1
    return np.asarray([", ".join(name for name, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])
                       for c in per], dtype=object)
