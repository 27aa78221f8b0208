"""``RegionData``: the one hand-off object between front doors and the engine.

Both front doors (QGIS layers through ``processing_provider``, files through
``topt_core.io``) build one of these; everything after it is numpy/torch.
Coordinates are metric (metres in a projected CRS), never degrees, so
distances mean the same thing in every city.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .errors import ToptDataError

VIEW_NAMES = ("poi", "landuse", "mobility", "extra")


@dataclass
class RegionData:
    """Regions and their views, row ``i`` everywhere is region ``i``.

    Attributes:
        region_ids: (N,) identifiers as strings (unique).
        centroids: (N, 2) centroid x/y in metres (projected CRS ``crs``).
        areas: (N,) area in square metres.
        crs: the metric CRS the coordinates are in, e.g. ``"EPSG:32618"``.
        poi_counts: (N, C) POI counts per category, or None.
        poi_categories: C category names.
        landuse: (N, L) non-negative land-use amounts (counts, areas or shares), or None.
        landuse_classes: L class names.
        mobility: (N, N) sparse OD counts, ``M[i, j]`` = trips from i to j, or None.
        extra: (N, K) extra numeric region features, or None.
        extra_names: K feature names.
        adjacency: (2, E) undirected neighbour edges (touching polygons), or None
            (then a k-nearest-centroid graph is used).
        targets: name -> (N,) float array, NaN where unknown. Never used by stage 1.
        names: optional (N,) human-readable names used in prompts.
    """

    region_ids: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray
    crs: str = "unknown"
    poi_counts: Optional[np.ndarray] = None
    poi_categories: list = field(default_factory=list)
    landuse: Optional[np.ndarray] = None
    landuse_classes: list = field(default_factory=list)
    mobility: Optional[sp.csr_matrix] = None
    extra: Optional[np.ndarray] = None
    extra_names: list = field(default_factory=list)
    adjacency: Optional[np.ndarray] = None
    targets: dict = field(default_factory=dict)
    names: Optional[np.ndarray] = None

    @property
    def n(self) -> int:
        return int(len(self.region_ids))

    def views(self) -> list[str]:
        """Names of the views present (and not all zero)."""
        out = []
        for name, arr in (("poi", self.poi_counts), ("landuse", self.landuse),
                          ("mobility", self.mobility), ("extra", self.extra)):
            if arr is not None and (arr.nnz if sp.issparse(arr) else np.count_nonzero(arr)) > 0:
                out.append(name)
        return out

    def without_targets(self) -> "RegionData":
        """A copy that carries no labels: what stage 1 is allowed to see."""
        return replace(self, targets={})

    def validate(self, min_regions: int = 2) -> "RegionData":
        """Check shapes and values; return self (normalised dtypes) or raise ``ToptDataError``."""
        n = self.n
        if n == 0:
            raise ToptDataError("The region layer has no regions; expected at least "
                                f"{min_regions} polygons. Check the layer and any selection or filter.")
        if n < min_regions:
            raise ToptDataError(f"The region layer has {n} region(s); training needs at least {min_regions}. "
                                "Use a larger study area or a finer set of regions.")
        ids = np.asarray(self.region_ids).astype(str)
        if len(set(ids.tolist())) != n:
            seen, dups = set(), []
            for x in ids.tolist():
                if x in seen and x not in dups:
                    dups.append(x)
                seen.add(x)
            raise ToptDataError(f"Region ids must be unique but {len(dups)} are repeated (e.g. {dups[:5]}); "
                                "choose a unique id field or leave REGION_ID_FIELD (--region-id) empty to use "
                                "feature ids.")
        self.region_ids = ids
        self.centroids = _finite_matrix("centroids", self.centroids, (n, 2))
        self.areas = np.asarray(self.areas, dtype=float).reshape(-1)
        if self.areas.shape != (n,):
            raise ToptDataError(f"areas has shape {self.areas.shape}; expected ({n},).")
        if self.poi_counts is not None:
            self.poi_counts = _nonneg_matrix("POI counts", self.poi_counts, n)
            self.poi_categories = _names(self.poi_categories, self.poi_counts.shape[1], "poi")
        if self.landuse is not None:
            self.landuse = _nonneg_matrix("land-use values", self.landuse, n)
            self.landuse_classes = _names(self.landuse_classes, self.landuse.shape[1], "landuse")
        if self.extra is not None:
            extra = np.asarray(self.extra, dtype=float)
            if extra.ndim != 2 or extra.shape[0] != n:
                raise ToptDataError(f"extra features have shape {extra.shape}; expected ({n}, K).")
            if not np.isfinite(extra).all():
                raise ToptDataError("Extra numeric region fields contain NaN or infinite values; "
                                    "fill them (e.g. with 0) or leave those fields out.")
            self.extra = extra
            self.extra_names = _names(self.extra_names, extra.shape[1], "extra")
        if self.mobility is not None:
            m = sp.csr_matrix(self.mobility, dtype=float)
            if m.shape != (n, n):
                raise ToptDataError(f"The OD matrix has shape {m.shape}; expected ({n}, {n}) for {n} regions.")
            if m.nnz and not np.isfinite(m.data).all():
                raise ToptDataError("The OD counts contain NaN or infinite values; expected finite trip counts. "
                                    "Remove or fix those rows.")
            if m.nnz and (m.data < 0).any():
                raise ToptDataError("The OD counts contain negative values; expected trip counts >= 0. "
                                    "Remove or fix those rows.")
            m.eliminate_zeros()
            self.mobility = m
        if self.adjacency is not None:
            a = np.asarray(self.adjacency, dtype=np.int64)
            if a.ndim != 2 or a.shape[0] != 2 or (a.size and (a.min() < 0 or a.max() >= n)):
                raise ToptDataError(f"adjacency must be a (2, E) array of region indices in [0, {n}); got {a.shape}.")
            self.adjacency = a
        if not self.views():
            raise ToptDataError("No usable view: POI counts, land use, mobility and extra fields are all "
                                "missing or all zero. Provide at least one of POIS, MOBILITY, LANDUSE or "
                                "numeric region fields with non-zero values.")
        clean = {}
        for name, y in self.targets.items():
            y = np.asarray(y, dtype=float).reshape(-1)
            if y.shape != (n,):
                raise ToptDataError(f"Target '{name}' has {y.shape[0]} values; expected one per region ({n}).")
            y[~np.isfinite(y)] = np.nan
            clean[name] = y
        self.targets = clean
        return self


def _finite_matrix(what, arr, shape):
    a = np.asarray(arr, dtype=float)
    if a.shape != shape:
        raise ToptDataError(f"{what} has shape {a.shape}; expected {shape}.")
    if not np.isfinite(a).all():
        raise ToptDataError(f"{what} contain NaN or infinite values; every region needs a valid geometry. "
                            "Run 'Fix geometries' and remove empty geometries first.")
    return a


def _nonneg_matrix(what, arr, n):
    a = np.asarray(arr, dtype=float)
    if a.ndim != 2 or a.shape[0] != n:
        raise ToptDataError(f"{what} have shape {a.shape}; expected ({n}, K) with one row per region.")
    if not np.isfinite(a).all():
        raise ToptDataError(f"{what} contain NaN or infinite values; expected finite numbers >= 0.")
    if (a < 0).any():
        raise ToptDataError(f"{what} contain negative values; expected amounts >= 0.")
    return a


def _names(names, k, prefix):
    names = [str(x) for x in (names or [])]
    if len(names) != k:
        names = [f"{prefix}_{i}" for i in range(k)]
    return names
