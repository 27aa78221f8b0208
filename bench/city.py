"""Synthetic cities for the scale benchmark: a grid of regions with POIs, gravity OD and land use.

Seeded and vectorised so 100 000 regions build in seconds. Everything comes from a few smooth
latent fields (city centres as Gaussian bumps), so a model has structure to find and a target
generated from the same fields has a known truth:

* ``density``: sum of Gaussian bumps; POI totals and OD trips grow with it.
* ``mix`` (3 smooth fields): the category mix of POIs and the land-use shares.
* POIs: ``categories`` classes, Poisson counts per region (``poi_points`` places them as points).
* OD: origins by density, destinations at an exponential distance (gravity-like), ``od_rows``
  records aggregated into counts.
* ``truth``: a smooth field (density and the first mix field) for interpretability checks.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _bumps(xy, rng, n_bumps, extent):
    centres = rng.uniform(0.15, 0.85, (n_bumps, 2)) * extent
    widths = rng.uniform(0.06, 0.2, n_bumps) * extent
    heights = rng.uniform(0.5, 1.5, n_bumps)
    d2 = ((xy[:, None, :] - centres[None]) ** 2).sum(-1)
    return (heights * np.exp(-0.5 * d2 / widths ** 2)).sum(1)


def make_city(n_regions: int, seed: int = 0, cell: float = 250.0, categories: int = 20, pois_per_region=50.0,
              od_rows: int | None = None, landuse: int = 6, grid: str = "square"):
    """A dict with the city: centroids (N, 2) metres, cell size, POI counts, OD (csr), land use, truth."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_regions)))
    ij = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n_regions]
    xy = ij.astype(float) * cell
    if grid == "hex":
        xy[:, 0] += (ij[:, 1] % 2) * cell / 2
        xy[:, 1] *= np.sqrt(3) / 2
    extent = side * cell
    x0 = 500_000.0, 4_500_000.0                       # a UTM-like origin, metres
    density = _bumps(xy, rng, 4, extent) + 0.05
    mix = np.stack([_bumps(xy, rng, 3, extent) for _ in range(3)], 1)
    mix = (mix - mix.mean(0)) / (mix.std(0) + 1e-9)
    w = rng.normal(size=(3, categories))
    logits = mix @ w + rng.normal(0, 0.3, (n_regions, categories))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lam = pois_per_region * density / density.mean()
    totals = rng.poisson(lam)
    poi = np.stack([rng.multinomial(t, pr) for t, pr in zip(totals, p)]).astype(float)
    lw = rng.normal(size=(3, landuse))
    lu = np.exp(mix @ lw * 0.7)
    lu /= lu.sum(1, keepdims=True)
    od_rows = od_rows if od_rows is not None else 20 * n_regions
    origins = rng.choice(n_regions, size=od_rows, p=density / density.sum())
    dist = rng.exponential(6 * cell, od_rows)
    ang = rng.uniform(0, 2 * np.pi, od_rows)
    target_xy = xy[origins] + np.stack([np.cos(ang), np.sin(ang)], 1) * dist[:, None]
    from scipy.spatial import cKDTree

    _, dest = cKDTree(xy).query(target_xy)
    trips = rng.integers(1, 20, od_rows).astype(float)
    od = sp.coo_matrix((trips, (origins, dest)), shape=(n_regions, n_regions)).tocsr()
    od.sum_duplicates()
    truth = np.log1p(density) + 0.5 * mix[:, 0]
    return {"centroids": xy + np.asarray(x0), "cell": cell, "poi": poi, "od": od, "landuse": lu,
            "truth": truth, "density": density, "ij": ij, "grid": grid,
            "od_records": (origins, dest, trips)}


def region_data(city):
    """The city as a ``RegionData`` (what either front door would build)."""
    from topt_core.data import RegionData

    n = len(city["centroids"])
    return RegionData(region_ids=np.arange(n).astype(str), centroids=city["centroids"],
                      areas=np.full(n, city["cell"] ** 2), crs="EPSG:32618",
                      poi_counts=city["poi"], poi_categories=[f"cat_{j:02d}" for j in range(city["poi"].shape[1])],
                      landuse=city["landuse"], landuse_classes=[f"lu_{j}" for j in range(city["landuse"].shape[1])],
                      mobility=city["od"]).validate()


def poi_points(city, seed: int = 0):
    """(x, y, category index) of every POI, placed uniformly inside its square cell."""
    rng = np.random.default_rng(seed + 1)
    counts = city["poi"].astype(int)
    reg, cat = np.nonzero(counts)
    rep = counts[reg, cat]
    reg, cat = np.repeat(reg, rep), np.repeat(cat, rep)
    half = city["cell"] / 2 * 0.98
    xy = city["centroids"][reg] + rng.uniform(-half, half, (len(reg), 2))
    return xy, cat


def write_files(city, folder, seed: int = 0):
    """The city as a user's files: regions.gpkg (square cells, EPSG:32618, region_id), pois.gpkg (points,
    category), od.csv (origin_id, destination_id, trips: one row per OD record). Returns the paths."""
    import csv
    from pathlib import Path

    import geopandas as gpd
    from shapely.geometry import box

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    h = city["cell"] / 2
    c = city["centroids"]
    regions = gpd.GeoDataFrame({"region_id": np.arange(len(c)), "truth": city["truth"]},
                               geometry=[box(x - h, y - h, x + h, y + h) for x, y in c], crs="EPSG:32618")
    regions.to_file(folder / "regions.gpkg", layer="regions", driver="GPKG")
    xy, cat = poi_points(city, seed)
    pois = gpd.GeoDataFrame({"category": [f"cat_{j:02d}" for j in cat]}, crs="EPSG:32618",
                            geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]))
    pois.to_file(folder / "pois.gpkg", layer="pois", driver="GPKG")
    o, d, t = city["od_records"]
    with open(folder / "od.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["origin_id", "destination_id", "trips"])
        w.writerows(zip(o.tolist(), d.tolist(), t.astype(int).tolist()))
    return {"regions": folder / "regions.gpkg", "pois": folder / "pois.gpkg", "od": folder / "od.csv"}
