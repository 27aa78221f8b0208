"""Spatial joins of the view layers onto the regions (QgsSpatialIndex + prepared GEOS engines).

The adapter loops over the registry's view inputs (``topt_core.views.inputs``): one function per
join kind locates every record in a region (points, OD line ends or id fields, polygon pieces,
region fields) and hands the counting to the view's own ``build``, the same code the geopandas
front door (``topt_core.io``) calls, so both give the same ``RegionData``. A view added to the
registry needs no code here.
"""
from __future__ import annotations

import numpy as np
from qgis.core import QgsCoordinateTransform, QgsFeatureRequest, QgsGeometry, QgsProcessingException, QgsWkbTypes

from topt_core.data import RegionData
from topt_core.matching import FEATURE_ID
from topt_core.views import inputs as view_inputs

from .reading import CANCEL_EVERY, NUMERIC_TYPES, check_cancel, field_or_fail, value, walk
from .regions import Regions, adjacency


def _points_xy(source, reg, context, feedback, start, end, value_fields=()):
    """Metric x/y of every point part, plus the requested attribute values of its feature."""
    ct = QgsCoordinateTransform(source.sourceCrs(), reg.crs, context.transformContext())
    idxs = [source.fields().indexFromName(f) for f in value_fields]
    req = QgsFeatureRequest().setSubsetOfAttributes(idxs)
    xs, ys, vals, no_geom = [], [], [[] for _ in idxs], 0
    for f in walk(source, feedback, start, end, req):
        g = f.geometry()
        if g.isNull() or g.isEmpty():
            no_geom += 1
            continue
        row = [value(f.attribute(i)) for i in idxs]
        for part in g.constParts():
            p = ct.transform(part.x(), part.y())
            xs.append(p.x())
            ys.append(p.y())
            for c, v in zip(vals, row):
                c.append(v)
    return np.asarray(xs), np.asarray(ys), vals, no_geom


def _given(values: dict, param) -> bool:
    """Is a view parameter set (a layer, a field name, a non-empty list of fields)?"""
    if param is None:
        return False
    v = values.get(param.qgis)
    return v is not None if param.kind == "layer" else bool(v)


def _name(param) -> str:
    return param.qgis


def _records(src, reg: Regions, **kw):
    return view_inputs.records(src, _name, n=reg.n, region_ids=reg.ids, id_field=reg.id_field or FEATURE_ID, **kw)


def _layer_fields(src, values):
    """The source's layer and the indexes of the fields given ({role: index}), checked."""
    layer = values[src.trigger.qgis]
    idx = {p.role: field_or_fail(layer, values[p.qgis], p.qgis, layer_param=f"{src.trigger.qgis} layer")
           for p in src.fields if _given(values, p)}
    return layer, idx


def join_points(src, values, reg, context, feedback, start=5.0, end=10.0):
    """``points`` join: every point part located in the region that contains it (the lowest row)."""
    layer, idx = _layer_fields(src, values)
    roles = list(idx)
    xs, ys, vals, no_geom = _points_xy(layer, reg, context, feedback, start, end,
                                       [values[src.param(r).qgis] for r in roles])
    region_index = np.full(len(xs), -1, dtype=np.int64)
    several = 0
    for k in range(len(xs)):
        if k % CANCEL_EVERY == 0:
            check_cancel(feedback)
        hits = reg.locate(xs[k], ys[k])
        if hits:
            region_index[k] = hits[0]
            several += len(hits) > 1
    if no_geom:
        feedback.pushWarning(view_inputs.no_geometry(no_geom, src))
    if several:
        feedback.pushInfo(view_inputs.in_several(several, src))
    return _records(src, reg, index=region_index, values=dict(zip(roles, vals)), features=layer.featureCount())


def _line_ends(source, reg, context, feedback, idx, start, end):
    """First and last vertex of every OD line located in regions, and the line's field values ({role: list})."""
    ct = QgsCoordinateTransform(source.sourceCrs(), reg.crs, context.transformContext())
    o, d, vals, no_geom = [], [], {r: [] for r in idx}, 0
    for f in walk(source, feedback, start, end):
        g = f.geometry()
        if g.isNull() or g.isEmpty():
            no_geom += 1
            continue
        nv = g.constGet().nCoordinates()
        a, b = g.vertexAt(0), g.vertexAt(nv - 1)
        pa, pb = ct.transform(a.x(), a.y()), ct.transform(b.x(), b.y())
        ha, hb = reg.locate(pa.x(), pa.y()), reg.locate(pb.x(), pb.y())
        o.append(ha[0] if ha else -1)
        d.append(hb[0] if hb else -1)
        for r, i in idx.items():
            vals[r].append(value(f.attribute(i)))
    return np.asarray(o, dtype=np.int64), np.asarray(d, dtype=np.int64), vals, no_geom


def join_od(src, values, reg, context, feedback, start=10.0, end=15.0):
    """``od`` join: a table of region ids (both id fields set), or OD lines (first/last vertex located)."""
    layer, idx = _layer_fields(src, values)    # a text count field is fine: the counts are parsed
    if view_inputs.od_by_ids(src, lambda p: _given(values, p)):
        req = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes(list(idx.values()))
        vals = {r: [] for r in idx}
        for f in walk(layer, feedback, start, end, req):
            for r, i in idx.items():
                vals[r].append(value(f.attribute(i)))
        return _records(src, reg, values=vals, features=layer.featureCount())
    if QgsWkbTypes.geometryType(layer.wkbType()) != QgsWkbTypes.LineGeometry:
        raise QgsProcessingException(view_inputs.no_lines(src, _name))
    o, d, vals, no_geom = _line_ends(layer, reg, context, feedback, idx, start, end)
    if no_geom:
        feedback.pushWarning(view_inputs.no_geometry(no_geom, src))
    return _records(src, reg, index=o, dest=d, values=vals, features=layer.featureCount())


def join_pieces(src, values, reg, context, feedback, start=15.0, end=20.0):
    """``pieces`` join: each polygon intersected with the regions (metric CRS), one record per piece."""
    layer, idx = _layer_fields(src, values)
    ct = QgsCoordinateTransform(layer.sourceCrs(), reg.crs, context.transformContext())
    ridx, area, vals, no_geom = [], [], {r: [] for r in idx}, 0
    for f in walk(layer, feedback, start, end, every=50):
        g = QgsGeometry(f.geometry())
        if g.isNull() or g.isEmpty():
            no_geom += 1
            continue
        g.transform(ct)
        if not g.isGeosValid():
            g = g.makeValid()
        row = {r: value(f.attribute(i)) for r, i in idx.items()}
        hits = []
        for i in sorted(reg.index.intersects(g.boundingBox())):
            if reg.engine(i).intersects(g.constGet()):
                a = reg.geoms[i].intersection(g).area()
                if a > 0:
                    hits.append((i, a))
        for i, a in hits or [(-1, 0.0)]:          # outside every region: one record, counted as outside
            ridx.append(i)
            area.append(a)
            for r in idx:
                vals[r].append(row[r])
    if no_geom:
        feedback.pushWarning(view_inputs.no_geometry(no_geom, src))
    return _records(src, reg, index=np.asarray(ridx, dtype=np.int64), areas=np.asarray(area, dtype=float),
                    region_areas=reg.areas, values=vals, features=layer.featureCount())


def join_region_fields(src, values, reg, context, feedback, start=0.0, end=0.0):
    """``region_fields`` join: the named fields of the region layer (numeric ones when the input says so)."""
    p = src.trigger
    columns = {}
    for name in values[p.qgis]:
        idx = reg.fields.indexFromName(name)
        if idx < 0:
            raise QgsProcessingException(f"{p.qgis}: the field '{name}' is not in the region layer (fields: "
                                         f"{', '.join(reg.fields.names()[:20])}). Choose one of its fields.")
        if p.numeric and reg.fields.at(idx).type() not in NUMERIC_TYPES:
            raise QgsProcessingException(view_inputs.not_numeric(p.qgis, name, reg.fields.at(idx).typeName()))
        columns[name] = reg.column(name)
    return _records(src, reg, columns=columns, features=reg.n)


JOINS = {"points": join_points, "od": join_od, "pieces": join_pieces, "region_fields": join_region_fields}


class ViewInputs:
    """The view parameters of train_regions as parsed: QGIS parameter id -> value (a feature source, a field
    name or a list of fields), plus the texts of TEXT_FIELDS (label -> (N,) strings).

    Keywords are the parameter ids in lower case: ``ViewInputs(pois=source, poi_category_field="category")``.
    """

    def __init__(self, values=None, texts=None, **params):
        known = {p.qgis for p in view_inputs.params()}
        self.values = dict(values or {})
        for key, v in params.items():
            if key.upper() not in known:
                raise TypeError(f"ViewInputs: unknown view parameter {key!r}; expected one of "
                                f"{sorted(k.lower() for k in known)}")
            self.values[key.upper()] = v
        self.texts = dict(texts or {})


def chosen_sources(values: dict) -> list:
    """[(view, source)] the user gave, in registry order, after the checks both doors make."""
    out = []
    for view in view_inputs.user_views():
        src = view_inputs.chosen(view, lambda p: _given(values, p), _name)
        if src is not None:
            out.append((view, src))
    return out


def view_rows(view, src, values: dict, reg: Regions, context, feedback, start=5.0, end=20.0):
    """One view's region rows (``views.inputs.Rows``) from its source's parameters; warnings and infos pushed."""
    rows = src.build(JOINS[src.join](src, values, reg, context, feedback, start, end))
    for msg in rows.warnings:
        feedback.pushWarning(msg)
    for msg in rows.infos:
        feedback.pushInfo(msg)
    return rows


def build_region_data(reg: Regions, inputs: ViewInputs, context, feedback, targets=None,
                      start=5.0, end=20.0) -> RegionData:
    """RegionData from the region layer and the view layers (every registered view's inputs)."""
    data = RegionData(region_ids=reg.ids, centroids=reg.centroids_m, areas=reg.areas_m2, perimeters=reg.perimeters_m(),
                      crs=reg.crs.authid(), targets=dict(targets or {}), names=reg.names,
                      id_field=reg.id_field or FEATURE_ID, texts=dict(inputs.texts or {}))
    given = chosen_sources(inputs.values)
    span = (end - start) / (len(given) + 1)
    for k, (view, src) in enumerate(given):
        rows = view_rows(view, src, inputs.values, reg, context, feedback, start + k * span, start + (k + 1) * span)
        view_inputs.apply(view, data, rows)
    check_cancel(feedback)
    data.adjacency = adjacency(reg, feedback)
    feedback.setProgress(end)
    return data.validate()
