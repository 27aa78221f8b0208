"""Derived views: computed from the regions themselves (and the user's views), never given by the user.

A derived view brings what a region's row of counts cannot: its polygon (``geometry``) and its
surroundings (``context``). It is a ``TableView`` whose values are computed on the fly from
``RegionData``, so nothing is stored twice and both front doors get it for free. Derived views do
not count as the user's inputs (``views.present``): a layer with only polygons still has no usable
view, and the descriptions of stage 2 are unchanged. ``SrelConfig`` switches each on or off
(``geometry_view``, ``context_view``); a model trained without one ignores it on new data.
"""
from __future__ import annotations

import numpy as np

from .. import context
from . import scaling
from .base import TableView


class DerivedView(TableView):
    """A numeric table computed from ``RegionData`` (``compute``), robust-scaled like the extra view."""

    derived = True
    counts = False
    config_switch = ""          # SrelConfig field that turns it on

    def compute(self, data) -> tuple[np.ndarray, list]:
        raise NotImplementedError

    def enabled(self, config, data=None) -> bool:
        """The config's switch: True/"on", False/"off", or "auto" (``auto_on(data)``)."""
        value = getattr(config, self.config_switch, False)
        if value == "auto":
            return data is not None and self.auto_on(data)
        return value in (True, "on")

    def auto_on(self, data) -> bool:
        return True

    def cached(self, data):
        """``compute(data)`` once per data object and inputs (the kNN sums are not free at city scale)."""
        key = (self.name,) + tuple(id(getattr(data, a, None)) for a in ("centroids", "areas", "perimeters",
                                                                       "poi_counts", "landuse"))
        cache = data.__dict__.setdefault("_derived_cache", {})
        if key not in cache:
            if len(cache) > 8:                       # inputs replaced many times: drop the stale entries
                cache.clear()
            cache[key] = self.compute(data)
        return cache[key]

    # storage: nothing of its own (it is recomputed from what the data already holds)
    def get(self, data):
        return self.cached(data)[0]

    def columns(self, data) -> list:
        return list(self.cached(data)[1])

    def set(self, data, values, columns) -> None:
        pass

    def validate(self, data, n: int) -> None:
        pass

    def subset(self, data, rows, out) -> None:
        pass

    def to_arrays(self, data):
        return {}, {}

    def from_arrays(self, data, arrays, meta, n) -> None:
        pass

    def warnings(self, data) -> list[str]:
        return []

    def raw(self, data, config, names=None):
        x = self.aligned(data, self.used_columns(data) if names is None else names)
        return x, np.full(x.shape[1], scaling.CLIP)

    def similarity_vectors(self, data) -> np.ndarray:
        x = np.asarray(self.get(data), dtype=np.float64)
        c, s = scaling.robust_fit(x)
        return scaling.robust_apply(x, c, s)

    def describe(self, data) -> list[str]:
        return [""] * data.n


class GeometryView(DerivedView):
    """The region's own polygon: log area, log perimeter and compactness (Polsby-Popper).

    Area alone explains much of what a count or a density does (a census tract is drawn to hold
    about the same number of people, so its area *is* a density), and no count view carries it."""

    name, label, facet_rank = "geometry", "Region geometry", 45
    columns_label, config_switch = "geometry measures", "geometry_view"

    def auto_on(self, data) -> bool:
        """With dense POIs a region's counts already say how big it is (Manhattan: the view cost 0.01 R² on
        311 calls, held-out seeds); with sparse ones its polygon is the only measure of size it has."""
        return data.poi_counts is None or CONTEXT.auto_on(data)

    def compute(self, data):
        x = context.geometry_features(data.areas, data.perimeters)
        names = ["log_area_km2", "log_perimeter_km", "compactness"][:x.shape[1]]
        return x, names


class ContextView(DerivedView):
    """What surrounds the region: log1p POI (and land-use) density over its 8, 32 and 128 nearest regions.

    Sparse real POIs (a median of 2-6 per census tract, a quarter of tracts with none) make one
    region's counts noise; summed over a neighbourhood they read as the district they are in."""

    name, label, facet_rank = "context", "Neighbourhood context", 46
    columns_label, config_switch = "context measures", "context_view"
    scales = (8, 32, 128)
    sources = ("poi", "landuse")
    sparse_below = 10          # auto: on when the median region holds fewer POIs than this

    def auto_on(self, data) -> bool:
        """Sparse POIs (real OSM extracts: a median of 2-6 per census tract) need the neighbourhood's; dense
        ones (Manhattan's 88 per region) carry their own, and there the extra view cost 0.01-0.03 R²
        (bench/RESULTS.md)."""
        med = self.median_pois(data)
        return med is not None and med < self.sparse_below

    @staticmethod
    def median_pois(data) -> float | None:
        """POIs in the median region (None without a POI view): what the ``auto`` rules read."""
        x = data.poi_counts
        return None if x is None else float(np.median(np.asarray(x).sum(1)))

    def why(self, data) -> str:
        """One line for the log: why the derived views are (not) used under ``auto``."""
        if data.poi_counts is None:
            return "no POIs: the polygon's measures stand in for the size a POI count would give"
        med = self.median_pois(data)
        if med < self.sparse_below:
            return (f"median {med:g} POIs per region (sparse): the polygon's measures and the POI densities over the "
                    "8, 32 and 128 nearest regions are added")
        return f"median {med:g} POIs per region (dense): they carry the region's size and mix themselves"

    def compute(self, data):
        from . import get

        cols, names = [], []
        for source in self.sources:
            v = get(source)
            x = v.get(data)
            if x is None or not v.present(data):
                continue
            x = np.asarray(x, dtype=np.float64)
            used = [j for j in range(x.shape[1]) if np.any(x[:, j] != 0)]
            labels = [str(v.columns(data)[j]) for j in used] + ["total"]
            cols.append(context.knn_density(x[:, used], data.centroids, data.areas, self.scales))
            names += [f"{source}{k}:{c}" for k in self.scales for c in labels]
        if not cols:
            return np.zeros((data.n, 0)), []
        return np.concatenate(cols, axis=1), names


CONTEXT = ContextView()
GEOMETRY = GeometryView()
