"""Region descriptions in words, built from ``RegionData`` only (never from labels).

Each region gets *facet* sentences: one per view present (each view writes its own, see
``View.describe`` in ``topt_core/views``), using the user's category names, plus the
``place`` facet written here: name (if any), area in km², centroid in the layer's metric CRS,
neighbour count, and the ``text`` facet with the user's own words (``RegionData.texts``: text
fields, POI names). Facets are ordered by the views' ``facet_rank`` (place = 40, text = 45),
e.g. poi, landuse, mobility, place, text, extra. Texts are kept short: the default encoder (MiniLM)
truncates at 256 tokens.

``describe_regions`` joins the facets into one paragraph per region. ``user_sentences`` keeps only
the words the user brought (region names, TEXT_FIELDS, POI names): everything else in a description
restates numbers (counts, shares, totals, area, position) that stage 2 already reads as numbers.
"""
from __future__ import annotations

import numpy as np

from .. import views
from ..data import RegionData
from ..views import words

PLACE_RANK = 40
TEXT_RANK = 45
MAX_TEXT = 240          # characters of the user's texts in one description


def text_sentences(data: RegionData) -> list[str]:
    """"Name: Midtown. Zoning: C5-2. POIs: Penn Station, ..." from ``RegionData.texts`` (empty ones left out)."""
    out = []
    for i in range(data.n):
        parts = [f"{label}: {str(v[i]).strip()}" for label, v in data.texts.items() if str(v[i]).strip()]
        s = ". ".join(parts)
        out.append((s[:MAX_TEXT - 1] + "…" if len(s) > MAX_TEXT else s) + ("." if s else ""))
    return out


def place_sentences(data: RegionData) -> list[str]:
    n = data.n
    areas_km2 = np.asarray(data.areas, dtype=float) / 1e6
    l_area = words.levels(areas_km2)
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
    return place


def describe_facets(data: RegionData) -> dict[str, list[str]]:
    """Facet name -> one sentence per region, for the views that are present, in description order."""
    ranked = [(v.facet_rank, v.name, v.describe) for v in views.present(data)]
    ranked.append((PLACE_RANK, "place", place_sentences))
    if data.texts:
        ranked.append((TEXT_RANK, "text", text_sentences))
    return {name: describe(data) for _, name, describe in sorted(ranked, key=lambda r: r[0])}


def describe_regions(data: RegionData) -> list[str]:
    """One paragraph per region: its facet sentences joined in description order."""
    facets = describe_facets(data)
    return [" ".join(facets[f][i] for f in facets) for i in range(data.n)]


def has_user_words(data: RegionData) -> bool:
    """Whether any region carries words of the user's (a region name, a TEXT_FIELDS value, POI names)."""
    if data.names is not None and any(str(v).strip() for v in data.names):
        return True
    return any(str(v).strip() for vals in data.texts.values() for v in vals)


def user_sentences(data: RegionData) -> list[str]:
    """Per region, only the user's own words: "Region Midtown. Zoning: C5-2. POIs: Penn Station, ..."
    ("" for a region without any). The rest of a description (counts, shares, OD totals, area, centroid,
    neighbour count) is made from numbers that stage 2's views route and neighbour term read directly."""
    text = text_sentences(data) if data.texts else [""] * data.n
    out = []
    for i in range(data.n):
        name = str(data.names[i]).strip() if data.names is not None else ""
        out.append(" ".join(s for s in ((f"Region {name}." if name else ""), text[i]) if s))
    return out
