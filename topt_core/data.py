"""``RegionData``: the one hand-off object between front doors and the engine.

Both front doors (QGIS layers through ``processing_provider``, files through
``topt_core.io``) build one of these; everything after it is numpy/torch.
Coordinates are metric (metres in a projected CRS), never degrees, so
distances mean the same thing in every city.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Optional

import numpy as np
from .errors import ToptDataError

if TYPE_CHECKING:
    import scipy.sparse as sp

@dataclass
class RegionData:
    """Regions and their views, row ``i`` everywhere is region ``i``.

    Attributes:
        region_ids: (N,) identifiers as strings (unique).
        centroids: (N, 2) centroid x/y in metres (projected CRS ``crs``).
        areas: (N,) area in square metres.
        perimeters: (N,) perimeter in metres, or None (older callers; the geometry view then has area only).
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
        tables: name -> ``views.Table`` for views added to the registry beyond the built-in four.
        id_field: the layer field the ids came from ("(feature id)" for feature ids), recorded with
            a model so prediction matches regions by the same field.
        texts: label -> (N,) strings the user has about each region (TEXT_FIELDS such as names or
            zoning, the names of the POIs inside it); they reach stage 2's descriptions.

    What each view means, how it is checked, scaled and described: ``topt_core.views``.
    """

    region_ids: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray
    crs: str = "unknown"
    perimeters: Optional[np.ndarray] = None
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
    tables: dict = field(default_factory=dict)
    id_field: str = ""
    texts: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(len(self.region_ids))

    def views(self) -> list[str]:
        """Names of the views present (and not all zero), in registry order."""
        from . import views

        return [v.name for v in views.present(self)]

    def subset(self, rows) -> "RegionData":
        """The regions ``rows`` (in that order): views, OD and adjacency restricted and renumbered.

        Used to describe the regions of a layer with the views stored in a model folder (matched by id).
        """
        from . import views

        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = self.n
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ToptDataError(f"region rows must lie in [0, {n}).")
        adjacency = None
        if self.adjacency is not None:
            new = np.full(n, -1, dtype=np.int64)
            new[rows] = np.arange(rows.size)
            a = new[np.asarray(self.adjacency, dtype=np.int64).reshape(2, -1)]
            adjacency = a[:, (a >= 0).all(0)]
        take = lambda a: None if a is None else np.asarray(a)[rows]  # noqa: E731
        out = replace(self, region_ids=take(self.region_ids), centroids=take(self.centroids),
                      areas=take(self.areas), perimeters=take(self.perimeters), adjacency=adjacency, names=take(self.names), tables=dict(self.tables),
                      targets={k: np.asarray(v)[rows] for k, v in (self.targets or {}).items()},
                      texts={k: np.asarray(v)[rows] for k, v in (self.texts or {}).items()})
        for view in views.REGISTRY:
            view.subset(self, rows, out)
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
        if self.perimeters is not None:
            self.perimeters = np.asarray(self.perimeters, dtype=float).reshape(-1)
            if self.perimeters.shape != (n,) or not np.isfinite(self.perimeters).all():
                raise ToptDataError(f"perimeters has shape {self.perimeters.shape} or non-finite values; expected "
                                    f"({n},) finite lengths in metres.")
        from . import views

        for view in views.REGISTRY:
            view.validate(self, n)
        if self.adjacency is not None:
            a = np.asarray(self.adjacency, dtype=np.int64)
            if a.ndim != 2 or a.shape[0] != 2 or (a.size and (a.min() < 0 or a.max() >= n)):
                raise ToptDataError(f"adjacency must be a (2, E) array of region indices in [0, {n}); got {a.shape}.")
            self.adjacency = a
        if not self.views():
            raise ToptDataError("No usable view: POI counts, land use, mobility and extra fields are all "
                                "missing or all zero. Provide at least one of POIS, MOBILITY, LANDUSE or "
                                "numeric region fields with non-zero values.")
        texts = {}
        for label, values in (self.texts or {}).items():
            v = np.asarray(["" if x is None else str(x) for x in values], dtype=object)
            if v.shape != (n,):
                raise ToptDataError(f"Text '{label}' has {len(v)} values; expected one per region ({n}).")
            texts[str(label)] = v
        self.texts = texts
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
