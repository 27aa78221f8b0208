"""Rebuild the real-city benchmark GeoPackages (nyc.gpkg, chicago.gpkg) from fetched public files.

Every input is read straight out of a fetched GitHub mirror (a bare git directory such as
``/work/.mirror/<owner>+<name>/repo``) with ``git show <commit>:<path>``, at the commit pinned in
``SOURCES`` below, so the output does not depend on anything hand-edited. See README.md for what
each source is, its licence and its caveats.

Usage::

    python bench/realcity/build.py [--mirrors /work/.mirror] [--out bench/realcity] [--city nyc|chicago]

``--mirrors`` (or the environment variable ``TOPT_MIRRORS``) is the folder that holds one
``<owner>+<name>/repo`` git directory per source repository (``fetch github:<owner>/<name>``).

Python needs geopandas, pandas, numpy, shapely (Debian's python3-geopandas is enough) and, to
read two non-GIS formats, ``xlrd>=2`` (the OSM POI tables are .xls) and ``rdata`` (the NYC ACS
table is an R .rda file); both are small pure-Python readers
(``pip install "xlrd>=2" rdata``). ``git`` must be on PATH.

Layers written per city (all in a metric UTM CRS):

* ``regions``: census-tract polygons; ``region_id`` (0..N-1), ``geoid`` (11-digit FIPS as text),
  a name field, and the numeric targets (NULL where unknown).
* ``pois``: OpenStreetMap points with ``category`` (the Geofabrik ``fclass``) and ``name``.
* ``od``: a non-spatial table ``origin_id``, ``destination_id``, ``trips`` (region ids), built
  by point-in-polygon of trip start/end coordinates and summing trips per region pair.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

if os.path.isdir("/usr/share/proj"):
    os.environ.setdefault("PROJ_DATA", "/usr/share/proj")
    os.environ.setdefault("PROJ_LIB", "/usr/share/proj")

import numpy as np
import pandas as pd
import geopandas as gpd
from shapely.geometry import Point  # noqa: F401  (shapely is the geometry engine used throughout)

HERE = Path(__file__).resolve().parent

# name -> (repository, commit, path inside the repository)
SOURCES = {
    "nyc_tracts": ("adarshk/NewYorkCensusViz", "e4957be96b6621a275caea41b67257e1b7124f79", "nyct2010"),
    "nyc_acs": ("spatialanalysis/geodaData", "1e27c7e77b14cbdadd9f43fd9ba56753930350f2", "data/nycsociodemo.rda"),
    "nyc_pois": ("Liyue-Chen/STContext", "30615d4ffcf804cb1d8e5399ba64e2d1385b668b", "Data/POI/POI_NYC-2017.xls"),
    "nyc_taxi": ("bhuvankumar007/Taxi-Demand-Prediction-using-machine-learning-techniques",
                 "d50a7912b1a496863af7b86ea16448b4596f104d",
                 ["yellow_tripdata_2015-01.csv", "yellow_tripdata_2016-01.csv", "yellow_tripdata_2016-02.csv",
                  "yellow_tripdata_2016-03.csv"]),
    "chi_sdoh": ("lanselin/notebooks_for_spatial_clustering", "d7bbbcea2ae007282bff0ad77e2c7623d83db90b",
                 "datasets/Chi-SDOH.zip"),
    "chi_commnames": ("spatialanalysis/geodaData", "1e27c7e77b14cbdadd9f43fd9ba56753930350f2",
                      "data-raw/chicagocomm.dbf"),
    "chi_pois": ("Liyue-Chen/STContext", "30615d4ffcf804cb1d8e5399ba64e2d1385b668b", "Data/POI/POI_Chicago-2019.xls"),
    "chi_divvy": ("SajithMelethil/CASE-STUDY_HOW_DOES_A_BIKE_SHARE_NAVIGATE_SPEEDY_SUCCESS-",
                  "f4e23badeb8f10168896b62f58e684a366b3bf96",
                  ["Divvy_Trips_2019_Q2.csv", "Divvy_Trips_2019_Q3.csv", "Divvy_Trips_2019_Q4.csv",
                   "Divvy_Trips_2020_Q1.csv"]),
    "chi_stations": ("kapibarr/big-data-project", "bd63f1403f8e20f7263319798fef699ebc3cd428",
                     ["data/2017/Divvy_Stations_2017_Q3Q4.csv", "data/2017/Divvy_Stations_2017_Q1Q2.csv",
                      "data/2016/Divvy_Stations_2016_Q4.csv"]),
}

NYC_CRS = "EPSG:32618"      # WGS 84 / UTM 18N, metres
CHI_CRS = "EPSG:32616"      # WGS 84 / UTM 16N, metres
BORO_COUNTY = {1: "061", 2: "005", 3: "047", 4: "081", 5: "085"}   # Manhattan, Bronx, Brooklyn, Queens, Staten Is.
BORO_NAME = {1: "Manhattan", 2: "Bronx", 3: "Brooklyn", 4: "Queens", 5: "Staten Island"}


# --------------------------------------------------------------------------------------------- sources
class Mirrors:
    def __init__(self, root: Path):
        self.root = Path(root)

    def gitdir(self, repo: str) -> Path:
        base = self.root / repo.replace("/", "+") / "repo"
        if (base / ".git").is_dir():
            base = base / ".git"
        if not base.exists():
            raise SystemExit(f"missing mirror for {repo}: {base} (fetch github:{repo})")
        return base

    def blob(self, repo: str, commit: str, path: str) -> bytes:
        out = subprocess.run(["git", "-C", str(self.gitdir(repo)), "show", f"{commit}:{path}"],
                             capture_output=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"cannot read {repo}@{commit}:{path}: {out.stderr.decode()[:300]}")
        data = out.stdout
        if data.startswith(b"version https://git-lfs"):
            raise SystemExit(f"{repo}:{path} is a Git LFS pointer, not the data")
        return data

    def source(self, key: str, path: str | None = None) -> bytes:
        repo, commit, p = SOURCES[key]
        return self.blob(repo, commit, path or p)


def _tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="realcity_"))


def read_shapefile(m: Mirrors, key: str) -> gpd.GeoDataFrame:
    repo, commit, stem = SOURCES[key]
    d = _tmpdir()
    for ext in ("shp", "shx", "dbf", "prj"):
        (d / f"{Path(stem).name}.{ext}").write_bytes(m.blob(repo, commit, f"{stem}.{ext}"))
    return gpd.read_file(d / f"{Path(stem).name}.shp")


def read_xls(m: Mirrors, key: str) -> pd.DataFrame:
    return pd.read_excel(io.BytesIO(m.source(key)), engine="xlrd")


def read_rda_frame(m: Mirrors, key: str, name: str) -> pd.DataFrame:
    import warnings

    import rdata

    d = _tmpdir()
    f = d / "x.rda"
    f.write_bytes(m.source(key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = rdata.read_rda(str(f))[name]
    return obj.drop(columns=[c for c in obj.columns if c == "geometry"])


# --------------------------------------------------------------------------------------------- helpers
def num(s) -> pd.Series:
    return pd.to_numeric(pd.Series(s).astype("object").replace({"NA": np.nan, "": np.nan}), errors="coerce")


MIN_DENOMINATOR = 20      # a rate over fewer than 20 persons/households is left NULL (ACS noise)


def ratio(a, b) -> pd.Series:
    a, b = num(a).astype(float).to_numpy(), num(b).astype(float).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    out[~(b >= MIN_DENOMINATOR)] = np.nan
    return pd.Series(out)


def points_from_lonlat(df: pd.DataFrame, lon: str, lat: str, crs: str) -> gpd.GeoDataFrame:
    x, y = num(df[lon]).to_numpy(float), num(df[lat]).to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y) & (np.abs(x) > 1) & (np.abs(y) > 1)
    g = gpd.GeoDataFrame(df.loc[ok].reset_index(drop=True),
                         geometry=gpd.points_from_xy(x[ok], y[ok]), crs="EPSG:4326")
    return g.to_crs(crs)


def region_of(points: gpd.GeoDataFrame, regions: gpd.GeoDataFrame) -> np.ndarray:
    """region_id of the polygon holding each point (-1 if none; first match if on a shared edge)."""
    j = gpd.sjoin(points[["geometry"]], regions[["region_id", "geometry"]], how="left", predicate="within")
    j = j[~j.index.duplicated(keep="first")]
    return j["region_id"].fillna(-1).astype(int).reindex(points.index).to_numpy()


def pois_layer(raw: pd.DataFrame, regions: gpd.GeoDataFrame, crs: str, log: dict) -> gpd.GeoDataFrame:
    raw = raw.copy()
    raw["category"] = raw["fclass"].astype("object").where(raw["fclass"].notna(), "").astype(str).str.strip()
    n0 = len(raw)
    raw = raw[raw["category"] != ""]
    log["pois_raw"] = n0
    log["pois_no_category_dropped"] = n0 - len(raw)
    raw = raw.drop_duplicates(subset=["osm_id"])
    g = points_from_lonlat(raw, "lon", "lat", crs)
    rid = region_of(g, regions)
    log["pois_outside_regions_dropped"] = int((rid < 0).sum())
    g = g.loc[rid >= 0].reset_index(drop=True)
    name = g["name"].astype("object").where(g["name"].notna(), "").astype(str).str.strip() if "name" in g else ""
    out = gpd.GeoDataFrame({"osm_id": num(g["osm_id"]).astype("int64"), "category": g["category"].astype(str),
                            "name": name.replace({"": None})}, geometry=g.geometry, crs=crs)
    counts = np.bincount(rid[rid >= 0], minlength=len(regions))
    log.update(pois=len(out), poi_categories=int(out["category"].nunique()),
               pois_per_region_median=float(np.median(counts)), pois_per_region_mean=float(counts.mean()),
               regions_without_pois=int((counts == 0).sum()),
               share_regions_without_pois=round(float((counts == 0).mean()), 4),
               top_categories=out["category"].value_counts().head(15).to_dict())
    return out


def od_table(o: np.ndarray, d: np.ndarray, n_regions: int, log: dict) -> pd.DataFrame:
    ok = (o >= 0) & (d >= 0)
    log["od_trips_raw"] = int(len(o))
    log["od_trips_unlocated_dropped"] = int((~ok).sum())
    t = pd.DataFrame({"origin_id": o[ok], "destination_id": d[ok]})
    t = t.groupby(["origin_id", "destination_id"]).size().rename("trips").reset_index()
    t = t.sort_values(["origin_id", "destination_id"]).reset_index(drop=True)
    touched = np.union1d(t.origin_id.unique(), t.destination_id.unique())
    log.update(od_pairs=len(t), od_trips=int(t.trips.sum()),
               od_intra_region_trips=int(t.loc[t.origin_id == t.destination_id, "trips"].sum()),
               od_regions_touched=int(len(touched)), od_share_regions_touched=round(len(touched) / n_regions, 4))
    return t.astype({"origin_id": "int64", "destination_id": "int64", "trips": "int64"})


def skew(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    if len(v) < 3 or v.std() == 0:
        return float("nan")
    return float(((v - v.mean()) ** 3).mean() / v.std() ** 3)


def target_stats(regions: pd.DataFrame, targets: list[str]) -> dict:
    out = {}
    for t in targets:
        v = regions[t].to_numpy(float)
        f = v[np.isfinite(v)]
        out[t] = dict(n=int(len(f)), share=round(len(f) / len(v), 4), min=float(f.min()), median=float(np.median(f)),
                      max=float(f.max()), skew=round(skew(f), 3))
    return out


def simplify(regions: gpd.GeoDataFrame, tol_m: float) -> gpd.GeoDataFrame:
    g = regions.copy()
    if tol_m > 0:
        g["geometry"] = g.geometry.simplify(tol_m, preserve_topology=True)
    g["geometry"] = g.geometry.buffer(0).where(~g.geometry.is_valid, g.geometry)
    return g


def write_gpkg(path: Path, regions: gpd.GeoDataFrame, pois: gpd.GeoDataFrame, od: pd.DataFrame | None):
    if path.exists():
        path.unlink()
    regions.to_file(path, layer="regions", driver="GPKG")
    pois.to_file(path, layer="pois", driver="GPKG")
    if od is not None:
        write_attribute_table(path, "od", od)


def write_attribute_table(path: Path, layer: str, df: pd.DataFrame):
    """A non-spatial GeoPackage table (gpkg_contents data_type 'attributes')."""
    import fiona

    types = {c: ("int" if pd.api.types.is_integer_dtype(df[c]) else
                 "float" if pd.api.types.is_float_dtype(df[c]) else "str") for c in df.columns}
    schema = {"geometry": "None", "properties": types}
    with fiona.open(path, "w", driver="GPKG", layer=layer, schema=schema) as dst:
        dst.writerecords({"geometry": None, "properties": {c: (r[c].item() if hasattr(r[c], "item") else r[c])
                                                            for c in df.columns}}
                         for _, r in df.iterrows())


# --------------------------------------------------------------------------------------------- NYC
NYC_TARGETS = ["median_income", "gini", "poverty_rate", "unemployment_rate", "bachelor_share", "pop_density"]


def build_nyc(m: Mirrors, out: Path, tol_m: float) -> dict:
    log: dict = {"city": "nyc"}
    tr = read_shapefile(m, "nyc_tracts")                     # NYC DCP 2010 tracts, EPSG:2263
    log["tracts_in_source"] = len(tr)
    tr = tr.to_crs(NYC_CRS)
    tr["BoroCT2010"] = tr["BoroCT2010"].astype(str).str.strip()
    tr = tr.sort_values("BoroCT2010").reset_index(drop=True)
    acs = read_rda_frame(m, "nyc_acs", "nycsociodemo")         # GeoDa NYC_Tract_ACS2008_12, 2166 rows
    acs["BoroCT2010"] = num(acs["boroct2010"]).astype("Int64").astype(str)
    if acs["BoroCT2010"].duplicated().any():
        raise SystemExit("duplicate BoroCT2010 in the ACS table")
    acs = acs.set_index("BoroCT2010")
    matched = tr["BoroCT2010"].isin(acs.index)
    log["acs_rows"] = len(acs)
    log["acs_match_rate"] = round(float(matched.mean()), 4)
    log["acs_unmatched_tracts"] = tr.loc[~matched, "BoroCT2010"].tolist()
    a = acs.reindex(tr["BoroCT2010"])
    boro = num(tr["BoroCode"]).astype(int)
    geoid = "36" + boro.map(BORO_COUNTY) + tr["CT2010"].astype(str).str.zfill(6)
    pop = num(a["poptot"]).to_numpy(float)
    land_km2 = tr.geometry.area.to_numpy() / 1e6            # DCP tracts are clipped to the shoreline
    pov_universe = num(a["poororstru"]).to_numpy(float) + num(a["okay"]).to_numpy(float)
    reg = gpd.GeoDataFrame({
        "region_id": np.arange(len(tr), dtype="int64"),
        "geoid": geoid.to_numpy(),
        "boroct2010": tr["BoroCT2010"].to_numpy(),
        "borough": boro.map(BORO_NAME).to_numpy(),
        "name": tr["NTAName"].astype(str).to_numpy(),
        "nta_code": tr["NTACode"].astype(str).to_numpy(),
        "population": pop,
        "median_income": num(a["medianinco"]).to_numpy(float),
        "gini": num(a["gini"]).to_numpy(float),
        "poverty_rate": ratio(a["poor"], pd.Series(pov_universe, index=a.index)).to_numpy(float),
        "unemployment_rate": ratio(a["popunemplo"], a["popinlabou"]).to_numpy(float),
        # GeoDa's education fields: lessthanhi = below high school, onlyhighsc = high school or more,
        # onlybachel = bachelor's or more (all persons 25+), so 25+ = lessthanhi + onlyhighsc
        "bachelor_share": ratio(a["onlybachel"], num(a["lessthanhi"]) + num(a["onlyhighsc"])).to_numpy(float),
        "pop_density": np.where(pop > 0, pop / land_km2, np.nan),
        "land_km2": land_km2,
    }, geometry=tr.geometry.to_numpy(), crs=NYC_CRS)
    for t in ["median_income", "gini"]:                      # GeoDa stores 0 for "no estimate"
        reg.loc[reg[t] <= 0, t] = np.nan
    reg = simplify(reg, tol_m)
    log["regions"] = len(reg)

    pois = pois_layer(read_xls(m, "nyc_pois"), reg, NYC_CRS, log)

    # OD: yellow-taxi trip samples (pickup/dropoff coordinates)
    frames = []
    for p in SOURCES["nyc_taxi"][2]:
        df = pd.read_csv(io.BytesIO(m.source("nyc_taxi", p)))
        df.columns = [c.strip().lower() for c in df.columns]
        frames.append(df[["pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude"]])
    trips = pd.concat(frames, ignore_index=True)
    o = np.full(len(trips), -1)
    d = np.full(len(trips), -1)
    for col, arr in (("pickup", o), ("dropoff", d)):
        g = points_from_lonlat(trips.reset_index().rename(columns={"index": "row"}),
                               f"{col}_longitude", f"{col}_latitude", NYC_CRS)
        arr[g["row"].to_numpy()] = region_of(g, reg)
    od = od_table(o, d, len(reg), log)

    write_gpkg(out / "nyc.gpkg", reg, pois, od)
    log["targets"] = target_stats(reg, NYC_TARGETS)
    return log


# --------------------------------------------------------------------------------------------- Chicago
CHI_TARGETS = ["per_capita_income", "poverty_rate", "child_poverty_rate", "unemployment_rate", "uninsured_rate",
               "pop_density", "violent_crime_rate", "property_crime_rate", "health_literacy", "foreclosure_rate"]


def build_chicago(m: Mirrors, out: Path, tol_m: float) -> dict:
    log: dict = {"city": "chicago"}
    d = _tmpdir()
    with zipfile.ZipFile(io.BytesIO(m.source("chi_sdoh"))) as z:
        z.extractall(d)
    shp = next(d.rglob("Chi-SDOH.shp"))
    s = gpd.read_file(shp)                                   # 791 tracts, EPSG:3435
    log["tracts_in_source"] = len(s)
    s = s.to_crs(CHI_CRS)
    s["geoid"] = num(s["geoid10"]).round().astype("Int64").astype(str)
    s = s.sort_values("geoid").reset_index(drop=True)
    names_path = _tmpdir() / "chicagocomm.dbf"
    names_path.write_bytes(m.source("chi_commnames"))
    cn = gpd.read_file(names_path)
    cmap = dict(zip(num(cn["area_num_1"]).astype(int), cn["community"].astype(str).str.title()))
    comm = num(s["commarea"]).astype(int)
    land_km2 = s.geometry.area.to_numpy() / 1e6
    pop = num(s["Pop2014"]).to_numpy(float)
    reg = gpd.GeoDataFrame({
        "region_id": np.arange(len(s), dtype="int64"),
        "geoid": s["geoid"].to_numpy(),
        "commarea": comm.to_numpy(),
        "name": comm.map(cmap).to_numpy(),
        "population": pop,
        "per_capita_income": num(s["EP_PCI"]).to_numpy(float),
        "poverty_rate": num(s["Pov14"]).to_numpy(float) / 100.0,
        "child_poverty_rate": num(s["ChldPvt14"]).to_numpy(float) / 100.0,
        "unemployment_rate": num(s["Unemp14"]).to_numpy(float) / 100.0,
        "uninsured_rate": num(s["EP_UNINSUR"]).to_numpy(float) / 100.0,
        "pop_density": np.where(pop > 0, pop / land_km2, np.nan),
        "violent_crime_rate": num(s["VCRIMERT15"]).to_numpy(float),
        "property_crime_rate": num(s["PCRIMERT15"]).to_numpy(float),
        "health_literacy": num(s["HealthLit"]).to_numpy(float),
        "foreclosure_rate": num(s["ForclRt"]).to_numpy(float),
        "land_km2": land_km2,
    }, geometry=s.geometry.to_numpy(), crs=CHI_CRS)
    log["community_name_match_rate"] = round(float(reg["name"].notna().mean()), 4)
    reg = simplify(reg, tol_m)
    log["regions"] = len(reg)

    pois = pois_layer(read_xls(m, "chi_pois"), reg, CHI_CRS, log)

    # OD: Divvy bike-share trip samples; 2019 files carry station ids only, 2020 carries coordinates
    st = []
    for p in SOURCES["chi_stations"][2]:
        df = pd.read_csv(io.BytesIO(m.source("chi_stations", p)))
        df.columns = [c.strip().lower() for c in df.columns]
        st.append(df[["id", "latitude", "longitude"]])
    st = pd.concat(st).dropna().drop_duplicates("id")
    raw = {p: pd.read_csv(io.BytesIO(m.source("chi_divvy", p))) for p in SOURCES["chi_divvy"][2]}
    # stations opened after 2017: take their coordinates from the 2020 trips, which carry them
    seen = []
    for df in raw.values():
        if "start_lat" in df.columns:
            for e in ("start", "end"):
                seen.append(pd.DataFrame({"id": num(df[f"{e}_station_id"]), "latitude": num(df[f"{e}_lat"]),
                                          "longitude": num(df[f"{e}_lng"])}))
    if seen:
        seen = pd.concat(seen).dropna().groupby("id").median().reset_index()
        seen = seen[~seen["id"].isin(st["id"])]
        log["stations_from_2017_2016_files"] = int(len(st))
        log["stations_added_from_2020_trip_coords"] = int(len(seen))
        st = pd.concat([st, seen])
    st = st.set_index("id")
    rows = []
    for p, df in raw.items():
        cols = {c.lower(): c for c in df.columns}
        if "start_lat" in cols:
            part = pd.DataFrame({"olat": df["start_lat"], "olon": df["start_lng"],
                                 "dlat": df["end_lat"], "dlon": df["end_lng"],
                                 "osid": num(df["start_station_id"]), "dsid": num(df["end_station_id"])})
        else:
            oc = next(c for c in df.columns if c.lower() in ("from_station_id", "03 - rental start station id"))
            dc = next(c for c in df.columns if c.lower() in ("to_station_id", "02 - rental end station id"))
            part = pd.DataFrame({"osid": num(df[oc]), "dsid": num(df[dc])})
            part["olat"] = part["osid"].map(st["latitude"])
            part["olon"] = part["osid"].map(st["longitude"])
            part["dlat"] = part["dsid"].map(st["latitude"])
            part["dlon"] = part["dsid"].map(st["longitude"])
        part["file"] = p
        rows.append(part)
    trips = pd.concat(rows, ignore_index=True)
    log["od_trips_per_file"] = trips["file"].value_counts().sort_index().to_dict()
    log["od_trips_without_station_coords"] = int(trips[["olat", "dlat"]].isna().any(axis=1).sum())
    o = np.full(len(trips), -1)
    dd = np.full(len(trips), -1)
    base = trips.reset_index().rename(columns={"index": "row"})
    for (lon, lat), arr in ((("olon", "olat"), o), (("dlon", "dlat"), dd)):
        g = points_from_lonlat(base, lon, lat, CHI_CRS)
        arr[g["row"].to_numpy()] = region_of(g, reg)
    od = od_table(o, dd, len(reg), log)

    write_gpkg(out / "chicago.gpkg", reg, pois, od)
    log["targets"] = target_stats(reg, CHI_TARGETS)
    return log


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mirrors", default=os.environ.get("TOPT_MIRRORS", "/work/.mirror"))
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--city", choices=["nyc", "chicago", "all"], default="all")
    ap.add_argument("--simplify-m", type=float, default=2.0, help="polygon simplification tolerance, metres")
    a = ap.parse_args(argv)
    m = Mirrors(Path(a.mirrors))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = {}
    if a.city in ("nyc", "all"):
        logs["nyc"] = build_nyc(m, out, a.simplify_m)
    if a.city in ("chicago", "all"):
        logs["chicago"] = build_chicago(m, out, a.simplify_m)
    for k, v in logs.items():
        v["gpkg_bytes"] = (out / f"{k}.gpkg").stat().st_size
    json.dump(logs, sys.stdout, indent=1, default=str)
    print()
    return logs


if __name__ == "__main__":
    main()
