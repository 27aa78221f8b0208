"""Region descriptions in words, built from ``RegionData`` only (never from labels).

Each region gets *facet* sentences, one per available view, using the user's category
names:

* ``poi``: "Included POIs: 143 parking (26%), 31 commercial (5.6%), ...; 558 in total (high)."
  (the 8 largest categories by name, the rest summed as "others")
* ``landuse``: the 5 largest land-use shares.
* ``mobility``: outgoing/incoming trips and their rank among all regions (1 = busiest).
* ``place``: name (if any), area in km², centroid in the layer's metric CRS, neighbour count.

Texts are kept short: the default encoder (MiniLM) truncates at 256 tokens.
* ``extra``: the user's extra numeric fields.

Counts are followed by a coarse level word ("very high" ... "very low", by quintile among the
regions). Small frozen language models read words better than digits, so the level words
carry most of the magnitude signal. Levels and ranks use the *features* of all regions (no
labels); they are part of the description like a normalisation of an input layer.

``describe_regions`` joins the facets into one paragraph per region.
"""
from __future__ import annotations

import numpy as np

from ..data import RegionData

FACETS = ("poi", "landuse", "mobility", "place", "extra")
LEVELS = ("very low", "low", "medium", "high", "very high")
MAX_LISTED = 8           # categories listed by name; the rest are summed as "others"
MAX_LANDUSE = 5


def _levels(values: np.ndarray) -> list[str]:
    """Quintile level word of each value among all regions."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return []
    ranks = v.argsort(kind="stable").argsort(kind="stable")
    q = np.minimum((ranks * 5) // max(len(v), 1), 4)
    if np.ptp(v) == 0:
        q = np.full(len(v), 2)
    return [LEVELS[int(i)] for i in q]


def _rank(values: np.ndarray) -> np.ndarray:
    """1 = largest."""
    v = np.asarray(values, dtype=float)
    return (-v).argsort(kind="stable").argsort(kind="stable") + 1


def _fmt(x: float) -> str:
    x = float(x)
    if abs(x - round(x)) < 1e-9:
        return f"{int(round(x))}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _pct(share: float) -> str:
    p = 100 * share
    return f"{p:.0f}%" if p >= 10 else f"{p:.1f}%"


def _composition(counts: np.ndarray, names: list, unit: str, total_word: str) -> list[str]:
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(1)
    lvl = _levels(totals)
    out = []
    for i in range(counts.shape[0]):
        tot = totals[i]
        if tot <= 0:
            out.append(f"No {unit} recorded.")
            continue
        order = [j for j in np.argsort(-counts[i], kind="stable") if counts[i, j] > 0]
        shown = order[:MAX_LISTED]
        parts = [f"{_fmt(counts[i, j])} {names[j]} ({_pct(counts[i, j] / tot)})" for j in shown]
        rest = counts[i, order[MAX_LISTED:]].sum() if len(order) > MAX_LISTED else 0
        if rest > 0:
            parts.append(f"{_fmt(rest)} others ({_pct(rest / tot)})")
        out.append(f"{total_word}: {', '.join(parts)}; {_fmt(tot)} in total ({lvl[i]}).")
    return out


def describe_facets(data: RegionData) -> dict[str, list[str]]:
    """Facet name -> one sentence per region, for the views that are present."""
    n = data.n
    facets: dict[str, list[str]] = {}
    if data.poi_counts is not None and np.count_nonzero(data.poi_counts):
        names = list(data.poi_categories) or [f"poi_{j}" for j in range(data.poi_counts.shape[1])]
        facets["poi"] = _composition(data.poi_counts, names, "points of interest", "Included POIs")
    if data.landuse is not None and np.count_nonzero(data.landuse):
        lu = np.asarray(data.landuse, dtype=float)
        names = list(data.landuse_classes) or [f"landuse_{j}" for j in range(lu.shape[1])]
        tot = lu.sum(1, keepdims=True)
        shares = np.divide(lu, tot, out=np.zeros_like(lu), where=tot > 0)
        sent = []
        for i in range(n):
            if tot[i, 0] <= 0:
                sent.append("No land use recorded.")
                continue
            order = [j for j in np.argsort(-shares[i], kind="stable") if shares[i, j] > 0][:MAX_LANDUSE]
            parts = [f"{names[j]} {_pct(shares[i, j])}" for j in order]
            sent.append(f"Land use: {', '.join(parts)}.")
        facets["landuse"] = sent
    if data.mobility is not None and data.mobility.nnz:
        m = data.mobility
        out_v = np.asarray(m.sum(1)).reshape(-1)
        in_v = np.asarray(m.sum(0)).reshape(-1)
        r_out, r_in = _rank(out_v), _rank(in_v)
        l_out, l_in = _levels(out_v), _levels(in_v)
        diag = m.diagonal()
        sent = []
        for i in range(n):
            s = (f"Mobility: {_fmt(out_v[i])} trips out ({l_out[i]}, rank {r_out[i]} of {n}), "
                 f"{_fmt(in_v[i])} trips in ({l_in[i]}, rank {r_in[i]} of {n})")
            if diag[i] > 0:
                s += f", {_fmt(diag[i])} within"
            sent.append(s + ".")
        facets["mobility"] = sent
    areas_km2 = np.asarray(data.areas, dtype=float) / 1e6
    l_area = _levels(areas_km2)
    deg = None
    if data.adjacency is not None and np.asarray(data.adjacency).size:
        a = np.asarray(data.adjacency)
        nb = [set() for _ in range(n)]
        for u, v in zip(a[0], a[1]):
            if u != v:
                nb[int(u)].add(int(v))
                nb[int(v)].add(int(u))
        deg = [len(s) for s in nb]
    place = []
    for i in range(n):
        name = ""
        if data.names is not None and str(data.names[i]).strip():
            name = f"Region {str(data.names[i]).strip()}. "
        x, y = data.centroids[i]
        s = f"{name}Area {areas_km2[i]:.2f} km2 ({l_area[i]}), centroid x={x:.0f} m, y={y:.0f} m"
        if deg is not None:
            s += f", {deg[i]} neighbouring region{'s' if deg[i] != 1 else ''}"
        place.append(s + ".")
    facets["place"] = place
    if data.extra is not None and np.size(data.extra):
        ex = np.asarray(data.extra, dtype=float)
        names = list(data.extra_names) or [f"extra_{j}" for j in range(ex.shape[1])]
        lv = [_levels(ex[:, j]) for j in range(ex.shape[1])]
        facets["extra"] = ["Other attributes: " + ", ".join(
            f"{names[j]} = {_fmt(ex[i, j])} ({lv[j][i]})" for j in range(ex.shape[1])) + "." for i in range(n)]
    return facets


def describe_regions(data: RegionData) -> list[str]:
    """One paragraph per region: its facet sentences joined, POIs first."""
    facets = describe_facets(data)
    order = [f for f in ("poi", "landuse", "mobility", "place", "extra") if f in facets]
    return [" ".join(facets[f][i] for f in order) for i in range(data.n)]
