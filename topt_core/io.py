"""Files <-> ``RegionData`` with geopandas: the command-line front door.

Loops over the registry's view inputs (``views.inputs``) as the QGIS adapter
(``processing_provider/adapters/spatial_join.py``) does: the same join kinds (metric CRS,
make-valid, point-in-polygon with the lowest region row winning, OD by ids or line ends,
area-weighted pieces, numeric region fields), then each view's own ``build`` — the same
code the QGIS adapter calls — so both doors give the same ``RegionData``.
geopandas is imported lazily: QGIS builds without it still load the engine.
Writing is atomic (temporary file, then rename), so a failure leaves nothing.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from . import joins
from .crs import ensure_proj_data, utm_epsg_for
from .data import RegionData
from .files import atomic_sidecars
from .matching import FEATURE_ID
from .errors import ToptDataError
from .progress import check_canceled, ensure_reporter

EMBEDDING_FIELD = re.compile(r"^emb_\d+$")


def _gpd():
    ensure_proj_data()
    try:
        import geopandas
    except ImportError as exc:  # pragma: no cover
        raise ToptDataError("Reading files needs geopandas, which is not installed; install it with "
                            "'apt install python3-geopandas' or 'pip install geopandas'.") from exc
    return geopandas


def split_spec(spec: str) -> tuple[str, str | None]:
    """``file.gpkg|layername=x`` or ``file.gpkg:x`` -> (path, layer)."""
    spec = str(spec)
    if "|layername=" in spec:
        path, layer = spec.split("|layername=", 1)
        return path, layer.split("|", 1)[0]
    if ":" in spec and not os.path.exists(spec):
        path, layer = spec.rsplit(":", 1)
        if os.path.exists(path):
            return path, layer
    return spec, None


def read_layer(spec: str):
    """A GeoDataFrame (or DataFrame for tables) from a file spec; clear error if unreadable."""
    gpd = _gpd()
    path, layer = split_spec(spec)
    if not os.path.exists(path):
        raise ToptDataError(f"The file {path!r} does not exist; expected a vector file (.gpkg, .shp, .geojson). "
                            "Check the path.")
    try:
        return gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except Exception as exc:
        raise ToptDataError(f"Cannot read {spec!r} as a vector layer ({exc}); expected a GeoPackage, Shapefile "
                            "or GeoJSON (use file.gpkg:layer to pick a layer).") from None


def _field(df, name, what):
    if name not in df.columns:
        raise ToptDataError(f"{what}: the field {name!r} is not in the layer (fields: "
                            f"{', '.join(map(str, list(df.columns)[:20]))}); choose one of its fields.")
    return [None if _isnull(v) else v for v in df[name].tolist()]


def _isnull(v):
    try:
        return v is None or (isinstance(v, float) and np.isnan(v))
    except TypeError:
        return False


def metric_crs(gdf, distance_crs: str | None):
    """DISTANCE_CRS if given (must be projected), else the UTM zone of the layer centre."""
    ensure_proj_data()
    from pyproj import CRS

    if distance_crs:
        crs = CRS.from_user_input(distance_crs)
        if crs.is_geographic:
            raise ToptDataError(f"DISTANCE_CRS {distance_crs} is geographic (degrees); distances and areas need a "
                                "projected CRS in metres. Choose a projected CRS or leave it empty.")
        if metres_per_unit(crs) is None:
            raise ToptDataError(f"DISTANCE_CRS {distance_crs} measures in a unit that is not a length; expected a "
                                "projected CRS in metres or feet. Choose another CRS or leave it empty.")
        return crs
    if gdf.crs is None:
        raise ToptDataError("The region layer has no CRS, so distances cannot be measured. Assign its CRS or "
                            "pass --distance-crs.")
    x0, y0, x1, y1 = gdf.total_bounds
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(gdf.crs, "EPSG:4326", always_xy=True).transform((x0 + x1) / 2, (y0 + y1) / 2)
    return CRS.from_epsg(utm_epsg_for(lon, lat))


def metres_per_unit(crs) -> float | None:
    """Metres per unit of a projected CRS's first axis (0.3048006 for US survey feet); None if unknown."""
    try:
        axis = crs.axis_info[0]
    except (AttributeError, IndexError):
        return None
    factor = getattr(axis, "unit_conversion_factor", None)
    if not factor or axis.unit_name in ("degree", "radian", "unknown"):
        return None
    return float(factor)


def polygon_parts(gdf, reporter=None):
    """As the QGIS adapter: features of mixed layers keep their polygon parts; the others are left out.

    Returns (GeoDataFrame of the kept features, mask of the kept rows).
    """
    from shapely.geometry import MultiPolygon, Polygon

    kinds = gdf.geometry.geom_type.fillna("empty geometries")
    keep = np.ones(len(gdf), dtype=bool)
    if set(gdf.geometry.dropna().geom_type) <= {"Polygon", "MultiPolygon"}:
        return gdf, keep      # a polygon layer: null geometries are refused later, as in QGIS

    def parts(g):
        if g is None or g.is_empty:
            return None
        if isinstance(g, (Polygon, MultiPolygon)):
            return g
        polys = [p for p in getattr(g, "geoms", []) if isinstance(p, (Polygon, MultiPolygon))]
        flat = [q for p in polys for q in (p.geoms if isinstance(p, MultiPolygon) else [p])]
        return MultiPolygon(flat) if flat else None

    geoms = gdf.geometry.apply(parts)
    held = ", ".join(f"{v} {k}" for k, v in kinds.value_counts().items())
    keep = geoms.notna().to_numpy()
    if not keep.any():
        raise ToptDataError(f"The region layer has no polygons (it holds {held}); expected a polygon layer. "
                            "Choose a polygon layer of regions.")
    ensure_reporter(reporter).warning(
        f"The region layer holds {held}. The polygon parts of {int(keep.sum())} feature(s) are used as regions; "
        f"{int((~keep).sum())} feature(s) without a polygon are left out of the run and the output. To choose "
        "yourself, extract the polygons first.")
    out = gdf.loc[keep].copy()
    out = out.set_geometry(geoms[keep].values, crs=gdf.crs)
    return out, keep


def read_regions(spec, region_id=None, distance_crs=None, reporter=None):
    """Regions as read + metric geometry: (gdf, metric GeoSeries, ids, crs string)."""
    from shapely.validation import make_valid

    gdf = read_layer(spec)
    if len(gdf) == 0:
        raise ToptDataError("The region layer has no features; expected at least 2 polygons.")
    if "geometry" not in gdf or not gdf.geometry.notna().any():
        raise ToptDataError("The region layer has no polygons; expected a polygon layer.")
    fids = np.asarray(feature_ids(spec, len(gdf)))       # as QGIS numbers features (a GeoPackage's fid)
    gdf, keep = polygon_parts(gdf, reporter)
    ids = joins.normalise_ids(_field(gdf, region_id, "REGION_ID_FIELD")) if region_id else fids[keep]
    empty = [ids[i] for i, g in enumerate(gdf.geometry) if g is None or g.is_empty]
    if empty:
        raise ToptDataError(f"{len(empty)} region(s) have no geometry (ids {empty[:5]}); every region needs a "
                            "polygon. Remove them or run 'Fix geometries'.")
    crs = metric_crs(gdf, distance_crs)
    metric = gdf.geometry.to_crs(crs)
    metric = metric.apply(lambda g: g if g.is_valid else make_valid(g))
    return gdf, metric, ids, crs.to_string()


def read_region_data(regions, region_id=None, targets=(), distance_crs=None, reporter=None, text_fields=(),
                     **inputs):
    """Build ``RegionData`` from files. Returns (data, the region GeoDataFrame as read).

    ``inputs``: the views' front-door inputs, by the name of their CLI flag (``views.inputs.params()``:
    ``pois``, ``poi_category``, ``poi_name``, ``landuse``, ``landuse_class``, ``landuse_fields``, ``od``,
    ``od_origin``, ``od_destination``, ``od_count``, ``extra_fields`` and those of any view added to the
    registry): layers as file specs, fields as names, region fields as a list (or a comma-separated string).
    Each view's join is the same as the QGIS adapter's and the counting is the view's own ``build``.
    """
    from .views import inputs as view_inputs

    known = {p.key: p for p in view_inputs.params()}
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise TypeError(f"read_region_data() got unknown view inputs {unknown}; expected some of {sorted(known)}")
    values = {k: _input_value(known[k], v) for k, v in inputs.items()}
    rep = ensure_reporter(reporter)
    gdf, metric, ids, crs = read_regions(regions, region_id, distance_crs, rep)
    n = len(ids)
    unit_m = metres_per_unit(metric.crs)
    rep.info(f"Regions: {n}, distances and areas in {crs}"
             + ("." if unit_m == 1.0 else f", its unit converted to metres (1 unit = {unit_m:.7g} m)."))
    cents = np.array([[c.x, c.y] for c in metric.centroid])
    areas = metric.area.to_numpy(dtype=float)          # CRS units: the land-use join divides by these
    perimeters = metric.length.to_numpy(dtype=float)
    sidx = metric.sindex
    i_idx, j_idx = sidx.query_bulk(metric, predicate="intersects")
    adjacency = joins.adjacency_from_pairs(i_idx, j_idx, n)
    other = i_idx < j_idx
    a, b = (metric.iloc[x[other]].reset_index(drop=True) for x in (i_idx, j_idx))
    same = np.asarray(a.geom_equals(b), dtype=bool) if len(a) else np.zeros(0, bool)
    warning = joins.duplicate_regions_warning(zip(i_idx[other][same], j_idx[other][same]), ids)
    if warning:
        rep.warning(warning)
    data = RegionData(region_ids=ids, centroids=cents, areas=areas, crs=crs, adjacency=adjacency,
                      id_field=region_id or FEATURE_ID)
    door = _FileDoor(values, gdf, metric, sidx, crs, ids, areas, data.id_field, rep)
    for view in view_inputs.user_views():
        check_canceled(rep)
        src = view_inputs.chosen(view, door.given, door.name)
        if src is None:
            continue
        rows = src.build(getattr(door, src.join)(src))
        for msg in rows.warnings:
            rep.warning(msg)
        for msg in rows.infos:
            rep.info(msg)
        view_inputs.apply(view, data, rows)
    check_canceled(rep)
    for t in targets:
        data.targets[t] = numeric_column(gdf, t)
    for f in text_fields:
        data.texts[f] = np.asarray(["" if v is None else str(v) for v in _field(gdf, f, "TEXT_FIELDS")], dtype=object)
    data.centroids, data.areas = cents * unit_m, areas * unit_m ** 2      # metres from here on
    data.perimeters = perimeters * unit_m
    return data.validate(), gdf


def _input_value(param, value):
    """A view input as given to ``read_region_data``: region fields as a list, the rest as is ('' = not given)."""
    if param.kind == "fields":
        if value is None:
            return []
        if isinstance(value, str):
            return [x.strip() for x in value.replace(";", ",").split(",") if x.strip()]
        return [str(x) for x in value]
    return value


_LINES = {"LineString", "MultiLineString"}
_SHAPES = {"point": {"Point", "MultiPoint"}, "line": _LINES, "polygon": {"Polygon", "MultiPolygon"}}


class _FileDoor:
    """The joins of the file front door, one method per join kind (``views.inputs.JOINS``), as the QGIS
    adapter does them with QGIS layers: metric CRS, the lowest region row wins, OD by ids or line ends,
    area-weighted pieces."""

    def __init__(self, values, gdf, metric, sidx, crs, ids, areas, id_field, reporter):
        self.values, self.gdf, self.metric, self.sidx, self.crs = values, gdf, metric, sidx, crs
        self.ids, self.areas, self.id_field, self.rep = ids, areas, id_field, reporter

    def given(self, param) -> bool:
        return param is not None and bool(self.values.get(param.key))

    @staticmethod
    def name(param) -> str:
        return param.cli

    def records(self, src, **kw):
        from .views.inputs import records

        return records(src, self.name, n=len(self.ids), region_ids=self.ids, id_field=self.id_field, **kw)

    def layer(self, src, geometry=True):
        """The source's layer and its fields given ({role: values}); its geometry checked against the source's."""
        p = src.trigger
        df = read_layer(self.values[p.key])
        fields = {f.role: _field(df, self.values[f.key], f.cli) for f in src.fields if self.given(f)}
        if geometry:
            held = set(df.geometry.dropna().geom_type) if "geometry" in df else set()
            want = _SHAPES.get(p.geometry)
            if "geometry" not in df or (want and not held <= want):
                what = ", ".join(sorted(held)) if held else "no geometry"
                raise ToptDataError(f"{p.cli}: the layer {self.values[p.key]!r} holds {what}; expected a {p.geometry} "
                                    f"layer. Choose a {p.geometry} layer for {p.cli}.")
        return df, fields

    def _no_geometry(self, src, count):
        from .views.inputs import no_geometry

        if count:
            self.rep.warning(no_geometry(count, src))

    def points(self, src):
        from .views.inputs import in_several

        pts, fields = self.layer(src)
        geom = pts.geometry.to_crs(self.crs)
        keep = [k for k, g in enumerate(geom) if g is not None and not g.is_empty]
        parts = geom.iloc[keep].explode(index_parts=False)
        src_rows = np.asarray(keep)[parts.index.to_numpy()] if len(keep) else np.zeros(0, int)
        parts = parts.reset_index(drop=True)
        region_index = np.full(len(parts), -1, dtype=np.int64)
        several = 0
        if len(parts):
            pi, ri = (np.asarray(a, dtype=np.int64) for a in self.sidx.query_bulk(parts, predicate="intersects"))
            order = np.lexsort((ri, pi))          # lowest region row wins, as in the QGIS adapter
            pi, ri = pi[order], ri[order]
            first = np.r_[True, pi[1:] != pi[:-1]] if len(pi) else np.zeros(0, bool)
            region_index[pi[first]] = ri[first]
            several = int((np.bincount(pi, minlength=len(parts)) > 1).sum())
        self._no_geometry(src, len(pts) - len(keep))
        if several:
            self.rep.info(in_several(several, src))
        return self.records(src, index=region_index, features=len(pts),
                            values={role: [v[r] for r in src_rows] for role, v in fields.items()})

    def od(self, src):
        from .views.inputs import no_lines, od_by_ids

        table, fields = self.layer(src, geometry=False)
        if od_by_ids(src, self.given):
            return self.records(src, values=fields, features=len(table))
        held = set(table.geometry.dropna().geom_type) if "geometry" in table else set()
        if "geometry" not in table or not held or not held <= _LINES:
            raise ToptDataError(no_lines(src, self.name))
        lines = table.geometry.to_crs(self.crs)
        ok = [k for k, g in enumerate(lines) if g is not None and not g.is_empty]
        ends = [_line_ends(lines.iloc[k]) for k in ok]
        o = np.array([_locate(self.sidx, self.metric, a) for a, _ in ends], dtype=np.int64)
        d = np.array([_locate(self.sidx, self.metric, b) for _, b in ends], dtype=np.int64)
        self._no_geometry(src, len(table) - len(ok))
        return self.records(src, index=o, dest=d, features=len(table),
                            values={role: [v[k] for k in ok] for role, v in fields.items()})

    def pieces(self, src):
        from shapely.validation import make_valid

        layer, fields = self.layer(src)
        geom = layer.geometry.to_crs(self.crs)
        ridx, rows, pa, no_geom = [], [], [], 0
        for k, g in enumerate(geom):
            if g is None or g.is_empty:
                no_geom += 1
                continue
            if not g.is_valid:
                g = make_valid(g)
            hit = False
            for i in sorted(self.sidx.query(g, predicate="intersects")):
                a = self.metric.iloc[i].intersection(g).area
                if a > 0:
                    ridx.append(i)
                    rows.append(k)
                    pa.append(a)
                    hit = True
            if not hit:                       # outside every region: one record, counted as outside
                ridx.append(-1)
                rows.append(k)
                pa.append(0.0)
        self._no_geometry(src, no_geom)
        return self.records(src, index=np.asarray(ridx, dtype=np.int64), areas=np.asarray(pa, dtype=float),
                            region_areas=self.areas, features=len(layer),
                            values={role: [v[k] for k in rows] for role, v in fields.items()})

    def region_fields(self, src):
        from .views.inputs import not_numeric

        p = src.trigger
        columns = {}
        for f in self.values[p.key]:
            vals = _field(self.gdf, f, p.cli)
            if p.numeric:
                kind = _non_numeric_type(self.gdf[f], vals)
                if kind:
                    raise ToptDataError(not_numeric(p.cli, f, kind))
            columns[f] = vals
        return self.records(src, columns=columns, features=len(self.gdf))


def _non_numeric_type(column, values) -> str | None:
    """The type of a region field that is not numeric (as QGIS would call it), or None when it is numeric."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_bool_dtype(column.dtype):
        return "Boolean"
    if is_numeric_dtype(column.dtype):
        return None
    for v in values:
        if v is None:
            continue
        if isinstance(v, str):
            return "String"
        if isinstance(v, (bool, np.bool_)):
            return "Boolean"
        if not isinstance(v, (int, float, np.number)):
            return type(v).__name__
    return None


def _line_ends(g):
    """(first vertex, last vertex) of a line or multi-line (first part's start, last part's end), as QGIS."""
    from shapely.geometry import Point

    if g is None or g.is_empty or g.geom_type not in ("LineString", "MultiLineString"):
        return None, None
    parts = list(g.geoms) if g.geom_type == "MultiLineString" else [g]
    return Point(parts[0].coords[0]), Point(parts[-1].coords[-1])


def _locate(sidx, metric, point):
    if point is None:
        return -1
    hits = sorted(sidx.query(point, predicate="intersects"))
    return hits[0] if hits else -1


def numeric_column(df, name) -> np.ndarray:
    """A numeric field as floats, NaN where empty; clear error if it is text."""
    if name not in df.columns:
        raise ToptDataError(f"The field {name!r} is not in the layer (fields: {', '.join(map(str, df.columns))}); "
                            "choose one of its fields.")
    try:
        return np.asarray([np.nan if _isnull(v) else float(v) for v in df[name].tolist()], dtype=float)
    except (TypeError, ValueError):
        raise ToptDataError(f"The field {name!r} is not numeric; choose a numeric target field.") from None


def embedding_matrix(df, prefix="emb_") -> np.ndarray:
    cols = sorted(c for c in df.columns if str(c).startswith(prefix) and str(c)[len(prefix):].isdigit())
    if not cols:
        raise ToptDataError(f"The layer has no embedding fields ({prefix}000, {prefix}001, …); run train first "
                            "or choose the layer it wrote.")
    emb = np.asarray(df[cols].to_numpy(dtype=float))
    if not np.isfinite(emb).all():
        raise ToptDataError("Some embedding values are empty or not finite; re-run train on these regions.")
    return emb


def feature_ids(spec: str, n: int) -> list:
    """The OGR feature ids of a file layer (a GeoPackage's fid), as QGIS numbers features; 0..n-1 if unknown."""
    path, layer = split_spec(spec)
    try:
        import fiona

        with fiona.open(path, layer=layer) if layer else fiona.open(path) as src:
            ids = [f.id for f in src]
    except Exception:    # not an OGR file, fiona missing: row numbers, as geopandas numbers rows
        return [str(i) for i in range(n)]
    return [str(x) for x in ids] if len(ids) == n else [str(i) for i in range(n)]


def layer_columns(df) -> dict:
    """field -> values (None where empty) of every attribute column, for matching regions."""
    return {str(c): [None if _isnull(v) else v for v in df[c].tolist()] for c in df.columns if c != "geometry"}


def layer_region_data(df, ids=None, description_fields=()) -> RegionData:
    """Descriptions from the layer itself: polygons (area, place, neighbours) + numeric description fields."""
    n = len(df)
    ids = np.asarray(ids if ids is not None else [str(i) for i in range(n)], dtype=str)
    cents, areas, crs, adjacency = np.zeros((n, 2)), np.zeros(n), "unknown", None
    if "geometry" in df and df.geometry.notna().all() and set(df.geometry.geom_type) <= {"Polygon", "MultiPolygon"}:
        crs_obj = metric_crs(df, None)
        metric = df.geometry.to_crs(crs_obj)
        cents = np.array([[c.x, c.y] for c in metric.centroid])
        areas = metric.area.to_numpy(dtype=float)
        crs = crs_obj.to_string()
        i_idx, j_idx = metric.sindex.query_bulk(metric, predicate="intersects")
        adjacency = joins.adjacency_from_pairs(i_idx, j_idx, n)
    extra = None
    if description_fields:
        extra = np.stack([numeric_column(df, f) for f in description_fields], axis=1)
        extra = np.where(np.isfinite(extra), extra, 0.0)
    return RegionData(region_ids=ids, centroids=cents, areas=areas, crs=crs, extra=extra,
                      extra_names=list(description_fields), adjacency=adjacency)


def write_layer(df, columns: dict, path, layer: str | None = None) -> Path:
    """Write ``df`` plus new columns to a vector file atomically (temp file, then rename)."""
    gpd = _gpd()
    path = Path(path)
    import pandas as pd

    new = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()}, index=df.index)
    out = pd.concat([df.drop(columns=[c for c in columns if c in df.columns]), new], axis=1)
    out = gpd.GeoDataFrame(out, geometry="geometry" if "geometry" in out else None, crs=getattr(df, "crs", None))
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".shp": "ESRI Shapefile"}.get(path.suffix.lower(), "GPKG")
    with atomic_sidecars(path) as tmpdir:     # a Shapefile is several files: all move, or none
        out.to_file(tmpdir / path.name, driver=driver, layer=layer or path.stem)
    return path


def write_lines(regions, source_rows, target_rows, columns: dict, path) -> Path:
    """Straight lines between regions (points on surface), from ``source_rows`` to ``target_rows``,
    with ``columns`` as fields; GeoPackage or GeoJSON, written atomically."""
    gpd = _gpd()
    from shapely.geometry import LineString

    pts = regions.geometry.representative_point()
    geoms = [LineString([pts.iloc[int(s)], pts.iloc[int(t)]]) for s, t in zip(source_rows, target_rows)]
    df = gpd.GeoDataFrame(columns, geometry=geoms, crs=regions.crs)
    path = Path(path)
    with atomic_sidecars(path) as tmpdir:
        df.to_file(tmpdir / path.name, driver="GPKG" if path.suffix.lower() != ".geojson" else "GeoJSON",
                   layer=path.stem)
    return path


def write_links(regions, links, region_ids, path) -> Path:
    """The attention links as lines from the attended region to the attending one."""
    return write_lines(regions, links.source, links.target, {
        "source_id": [str(region_ids[int(s)]) for s in links.source],
        "target_id": [str(region_ids[int(t)]) for t in links.target],
        "weight": links.weight.astype(float), "rank": links.rank.astype("int32"),
        "distance_m": links.distance_m.astype(float), "od_flow": links.od_flow.astype("int32")}, path)


def write_evidence(regions, target_rows, source_rows, weights, region_ids, path) -> Path:
    """Stage 2's evidence: lines from each region's top labelled neighbours to the region."""
    return write_lines(regions, source_rows, target_rows, {
        "source_id": [str(region_ids[int(s)]) for s in source_rows],
        "target_id": [str(region_ids[int(t)]) for t in target_rows],
        "weight": np.asarray(weights, dtype=float)}, path)


def polygon_rings(df):
    """Per row the exterior rings of its polygon parts as (K, 2) arrays (for the report maps), or
    None when the layer has no geometry."""
    if "geometry" not in getattr(df, "columns", ()):
        return None
    from .report import shapely_rings

    return [shapely_rings(g) for g in df.geometry]
