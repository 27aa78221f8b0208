"""Loading the Manhattan-180 benchmark (HAFusion lineage) as a ``RegionData``.

The benchmark is how stage 1 is checked against published numbers, so the
loader builds exactly what a user's layers would give: counts, one OD table,
metric centroids and areas (EPSG:32618 via pyproj + shapely), touching-polygon
adjacency, plus the three regression labels as targets.

OD table: ``mob-adj.npy`` by default. It is the cleaner taxi OD matrix (9.33 M
trips) that MVURE/HAFusion use as the mobility loss target; ``mob_dist.npy``
(HAFusion's mobility *input*) carries a 1.54 M-trip self-loop artefact in
region 179. A user has one OD table, so one is used for both features and
loss; ``mobility="mob_dist"`` loads the artefact version to check robustness.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .data import RegionData
from .errors import ToptDataError

TARGET_FILES = {"crime": "crime_counts.npy", "checkin": "check_counts.npy", "service": "serviceCall_counts.npy"}
MOBILITY_FILES = {"mob-adj": "mob-adj.npy", "mob_dist": "mob_dist.npy"}
METRIC_CRS = "EPSG:32618"


def _geometry(geojson: Path, n: int):
    from .crs import ensure_proj_data

    ensure_proj_data()
    from pyproj import Transformer
    from shapely.geometry import shape
    from shapely.ops import transform

    fc = json.loads(geojson.read_text(encoding="utf-8"))
    feats = sorted(fc["features"], key=lambda f: int(f["properties"]["region_id"]))
    if [int(f["properties"]["region_id"]) for f in feats] != list(range(n)):
        raise ToptDataError(f"{geojson} must hold region_id 0..{n - 1} once each; check the file.")
    to_metric = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True).transform
    centroids, areas, edges = np.zeros((n, 2)), np.zeros(n), []
    for i, f in enumerate(feats):
        g = transform(to_metric, shape(f["geometry"]))
        c = g.centroid
        centroids[i] = (c.x, c.y)
        areas[i] = g.area
        nb = str(f["properties"].get("neighbors") or "")
        edges += [(i, int(j)) for j in nb.split(";") if j.strip()]
    return centroids, areas, np.asarray(edges, dtype=np.int64).T.reshape(2, -1)


def load_manhattan(data_dir, mobility: str = "mob-adj", views=("poi", "landuse", "mobility")) -> RegionData:
    """Manhattan-180 as RegionData. ``data_dir`` is ``shared/data/nyc_manhattan180``."""
    root = Path(data_dir)
    haf = root / "hafusion"
    if not haf.is_dir():
        raise ToptDataError(f"{haf} not found; expected the Manhattan-180 folder (shared/data/nyc_manhattan180).")
    if mobility not in MOBILITY_FILES:
        raise ToptDataError(f"mobility must be one of {sorted(MOBILITY_FILES)}, got {mobility!r}.")
    poi = np.load(haf / "poi_dist.npy").astype(float)
    n = poi.shape[0]
    centroids, areas, adjacency = _geometry(root / "derived" / "mh180_regions.geojson", n)
    targets = {name: np.load(haf / f).astype(float).reshape(-1) for name, f in TARGET_FILES.items()}
    data = RegionData(
        region_ids=np.arange(n).astype(str), centroids=centroids, areas=areas, crs=METRIC_CRS,
        poi_counts=poi if "poi" in views else None,
        landuse=np.load(haf / "landUse_dist.npy").astype(float) if "landuse" in views else None,
        mobility=(sp.csr_matrix(np.load(haf / MOBILITY_FILES[mobility]).astype(float).reshape(n, n))
                  if "mobility" in views else None),
        adjacency=adjacency, targets=targets)
    return data.validate()
