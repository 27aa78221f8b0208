"""The land-use view: per-region amounts or area shares of land-use classes."""
from __future__ import annotations

import numpy as np

from .. import joins
from ..errors import ToptDataError
from . import words
from .base import TableView
from .extra import region_fields
from .inputs import Param, Records, Rows, Source, report

MAX_LANDUSE = 5          # classes named in a description


def from_pieces(rec: Records) -> Rows:
    """The front doors' land-use rows from polygons: the area share of each class in each region."""
    out, names, rep = shares(rec.index, rec.values["class"], rec.areas, rec.n, region_areas=rec.region_areas)
    return Rows(out, names, warnings=report(rep),
                infos=[f"Land use: {len(names)} classes from {rec.features} polygons; mean covered share of a "
                       f"region {out.sum(1).mean():.2f}."])


class LanduseView(TableView):
    name, label, facet_rank = "landuse", "land-use values", 20
    attr, columns_attr, column_prefix, columns_label = "landuse", "landuse_classes", "landuse", "land-use classes"
    sources = (
        Source("pieces", (
            Param("LANDUSE", "--landuse", "layer", "Land use (polygons)",
                  "Land-use polygons; each region gets the area share of every class.", geometry="polygon"),
            Param("LANDUSE_CLASS_FIELD", "--landuse-class", "field", "Land-use class field",
                  "The class of each land-use polygon. Required with land-use polygons.", role="class",
                  required=True, holds="each polygon's land-use class")),
            from_pieces, noun="land-use polygon"),
        Source("region_fields", (
            Param("LANDUSE_FIELDS", "--landuse-fields", "fields", "Or: land-use amount fields on the regions",
                  "Instead of polygons: numeric region fields holding land-use amounts.", numeric=True),),
            region_fields))

    def describe(self, data) -> list[str]:
        """"Land use: residential 40%, ..." (the 5 largest shares)."""
        lu = np.asarray(self.get(data), dtype=float)
        names = self.columns(data)
        if len(names) != lu.shape[1]:
            names = [f"landuse_{j}" for j in range(lu.shape[1])]
        tot = lu.sum(1, keepdims=True)
        shares = np.divide(lu, tot, out=np.zeros_like(lu), where=tot > 0)
        sent = []
        for i in range(lu.shape[0]):
            if tot[i, 0] <= 0:
                sent.append("No land use recorded.")
                continue
            order = [j for j in np.argsort(-shares[i], kind="stable") if shares[i, j] > 0][:MAX_LANDUSE]
            sent.append(f"Land use: {', '.join(f'{names[j]} {words.pct(shares[i, j])}' for j in order)}.")
        return sent


VIEW = LanduseView()


def shares(region_idx, class_values, areas, n: int, region_areas=None, classes_order=None):
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
    keys = joins.keys(class_values)
    a, ok = joins.clean_weights(areas, len(idx), "land-use piece area")
    rep = joins.ViewReport("landuse", records=len(idx))
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
    out = np.divide(amount, denom[:, None], out=np.zeros_like(amount), where=denom[:, None] > 0)
    return out, names, rep
