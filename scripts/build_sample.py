#!/usr/bin/env python3
"""Build resources/sample/manhattan.gpkg from the Manhattan-180 benchmark.

Run with the project venv (no QGIS needed):

    PROJ_DATA=/usr/share/proj .venv/bin/python scripts/build_sample.py [DATA_DIR]

DATA_DIR defaults to ../shared/data/nyc_manhattan180 next to the checkout.
Layers written (EPSG:4326, like the source geometry):

* ``regions``: the 180 polygons with region_id, crime_count, checkin_count,
  service_call_count, cd_label, area_km2, neighbourhood (the NYC 2010 NTA names of its tracts,
  derived/mh180_nyct2010_crosswalk.csv) and land-use counts lu_00..lu_10 (hafusion/landUse_dist.npy).
* ``pois``: one point per POI so that counting points per region and
  ``category`` gives hafusion/poi_dist.npy exactly. The benchmark has counts
  only, no locations and no category names: points are placed uniformly at
  random inside their region (fixed seed, away from every other region), and
  categories are named cat_00..cat_25.
* ``od``: a table (no geometry) origin_id, destination_id, trips holding the
  non-zero entries of hafusion/mob-adj.npy, the OD table stage 1 trains on
  (see topt_core/benchmark.py for why mob-adj and not mob_dist).

The result is deterministic for a given input (seeded, sorted).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nyc_manhattan180"
OUT = ROOT / "resources" / "sample" / "manhattan.gpkg"
SEED = 180


def _regions(data_dir: Path):
    from shapely.geometry import shape

    fc = json.loads((data_dir / "derived" / "mh180_regions.geojson").read_text(encoding="utf-8"))
    feats = sorted(fc["features"], key=lambda f: int(f["properties"]["region_id"]))
    return [shape(f["geometry"]) for f in feats], [f["properties"] for f in feats]


def _neighbourhoods(data_dir: Path, n: int) -> list[str]:
    """Per region, the NYC 2010 Neighborhood Tabulation Areas (NTAName of its census tracts, from the
    benchmark's tract crosswalk) that cover at least 20 % of it, largest share first."""
    import csv

    share = [{} for _ in range(n)]
    with open(data_dir / "derived" / "mh180_nyct2010_crosswalk.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            i = int(row["region_id"])
            share[i][row["NTAName"]] = share[i].get(row["NTAName"], 0.0) + float(row["share_of_region"])
    out = []
    for s in share:
        kept = [k for k, v in sorted(s.items(), key=lambda kv: (-kv[1], kv[0])) if v >= 0.2] or \
            [max(s, key=s.get)] if s else []
        out.append("; ".join(kept))
    return out


def _random_points(geoms, counts, rng):
    """(region, category, x, y) rows: counts[i, c] points strictly inside region i and no other region."""
    from shapely.geometry import Point
    from shapely.prepared import prep
    from shapely.strtree import STRtree

    tree = STRtree(geoms)
    index_of = {id(g): i for i, g in enumerate(geoms)}
    prepared = [prep(g) for g in geoms]
    rows = []
    for i, g in enumerate(geoms):
        need = int(counts[i].sum())
        if need == 0:
            continue
        hits = [int(h) if isinstance(h, (int, np.integer)) else index_of[id(h)] for h in tree.query(g)]
        others = [prepared[j] for j in hits if j != i]   # shapely 1.8 returns geometries, 2.x indices
        minx, miny, maxx, maxy = g.bounds
        inner = g.buffer(-1e-6)            # ~0.1 m inside, so no point sits on a shared edge
        inner_p = prep(inner if not inner.is_empty else g)
        pts = []
        while len(pts) < need:
            xs = rng.uniform(minx, maxx, 4 * need)
            ys = rng.uniform(miny, maxy, 4 * need)
            for x, y in zip(xs, ys):
                p = Point(x, y)
                if inner_p.contains(p) and not any(o.intersects(p) for o in others):
                    pts.append((round(float(x), 7), round(float(y), 7)))
                    if len(pts) == need:
                        break
        cats = np.repeat(np.arange(counts.shape[1]), counts[i])
        rng.shuffle(cats)
        rows += [(i, int(c), x, y) for c, (x, y) in zip(cats, pts)]
    return rows


def build(data_dir: Path = DEFAULT_DATA, out: Path = OUT) -> Path:
    import fiona
    from shapely.geometry import MultiPolygon, mapping

    haf = data_dir / "hafusion"
    poi = np.load(haf / "poi_dist.npy").astype(np.int64)
    landuse = np.load(haf / "landUse_dist.npy").astype(np.int64)
    mob = np.load(haf / "mob-adj.npy").reshape(poi.shape[0], poi.shape[0])
    if not np.allclose(mob, np.round(mob)):
        raise SystemExit("mob-adj.npy is expected to hold whole trip counts")
    geoms, props = _regions(data_dir)
    n = len(geoms)
    assert poi.shape[0] == n == landuse.shape[0]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.gpkg")
    if tmp.exists():
        tmp.unlink()
    crs = "EPSG:4326"
    lu_fields = [f"lu_{k:02d}" for k in range(landuse.shape[1])]
    schema = {"geometry": "MultiPolygon",
              "properties": {"region_id": "int", "crime_count": "float", "checkin_count": "int",
                             "service_call_count": "int", "cd_label": "int", "area_km2": "float",
                             "neighbourhood": "str:120", **{f: "int" for f in lu_fields}}}
    ntas = _neighbourhoods(data_dir, n)
    with fiona.open(tmp, "w", driver="GPKG", layer="regions", crs=crs, schema=schema) as dst:
        for i, (g, p) in enumerate(zip(geoms, props)):
            g = MultiPolygon([g]) if g.geom_type == "Polygon" else g
            dst.write({"geometry": mapping(g), "properties": {
                "region_id": int(p["region_id"]), "crime_count": float(p["crime_count"]),
                "checkin_count": int(p["checkin_count"]), "service_call_count": int(p["service_call_count"]),
                "cd_label": int(p["cd_label"]), "area_km2": float(p["area_km2"]), "neighbourhood": ntas[i],
                **{f: int(landuse[i, k]) for k, f in enumerate(lu_fields)}}})

    rows = _random_points(geoms, poi, np.random.default_rng(SEED))
    schema = {"geometry": "Point", "properties": {"poi_id": "int", "category": "str:8"}}
    with fiona.open(tmp, "w", driver="GPKG", layer="pois", crs=crs, schema=schema) as dst:
        dst.writerecords({"geometry": {"type": "Point", "coordinates": (x, y)},
                          "properties": {"poi_id": k, "category": f"cat_{c:02d}"}}
                         for k, (_, c, x, y) in enumerate(rows))

    oi, di = np.nonzero(mob)
    schema = {"geometry": "None", "properties": {"origin_id": "int", "destination_id": "int", "trips": "int"}}
    with fiona.open(tmp, "w", driver="GPKG", layer="od", schema=schema) as dst:
        dst.writerecords({"geometry": None, "properties": {"origin_id": int(a), "destination_id": int(b),
                                                           "trips": int(round(mob[a, b]))}}
                         for a, b in zip(oi, di))
    os.replace(tmp, out)
    print(f"{out}: {n} regions, {len(rows)} POIs, {len(oi)} OD pairs ({int(mob.sum())} trips), "
          f"{out.stat().st_size / 1e6:.2f} MB")
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA)
