"""Spatial joins of the view layers onto the regions (QgsSpatialIndex + prepared GEOS engines).

Each join locates every record in a region (POI points, OD line ends or id fields, land-use
pieces) and hands the counting to the view's module in ``topt_core.views``, the same code the
geopandas front door calls, so both give the same ``RegionData``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qgis.core import QgsCoordinateTransform, QgsFeatureRequest, QgsGeometry, QgsProcessingException, QgsWkbTypes

from topt_core.data import RegionData
from topt_core.matching import FEATURE_ID
from topt_core.views import extra as extra_view
from topt_core.views import landuse as landuse_view
from topt_core.views import mobility as mobility_view
from topt_core.views import poi as poi_view

from .reading import CANCEL_EVERY, NUMERIC_TYPES, check_cancel, field_or_fail, value, walk
from .regions import Regions, adjacency


def _report(rep, feedback):
    for msg in rep.messages():
        feedback.pushWarning(msg)


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


def join_pois(source, category_field, reg, context, feedback, start=5.0, end=10.0, name_field=""):
    """(counts, categories, names per region or None): POIs located in regions, counted per category."""
    if not category_field:
        raise QgsProcessingException("POIS is set but POI_CATEGORY_FIELD is empty; choose the field that holds "
                                     "each point's category (e.g. 'amenity' or 'category').")
    field_or_fail(source, category_field, "POI_CATEGORY_FIELD", layer_param="POI layer")
    wanted = [category_field]
    if name_field:
        field_or_fail(source, name_field, "POI_NAME_FIELD", layer_param="POI layer")
        wanted.append(name_field)
    xs, ys, vals, no_geom = _points_xy(source, reg, context, feedback, start, end, wanted)
    cats = vals[0]
    region_index = np.full(len(xs), -1, dtype=np.int64)
    ambiguous = 0
    for k in range(len(xs)):
        if k % CANCEL_EVERY == 0:
            check_cancel(feedback)
        hits = reg.locate(xs[k], ys[k])
        if hits:
            region_index[k] = hits[0]
            ambiguous += len(hits) > 1
    counts, names, outside, null, rep = poi_view.count(region_index, cats, reg.n)
    if no_geom:
        feedback.pushWarning(f"{no_geom} POI feature(s) have no geometry; they were left out.")
    if ambiguous:
        feedback.pushInfo(f"{ambiguous} POI point(s) lie in more than one region (overlapping polygons or on a "
                          "shared edge); each was counted once, in the first region.")
    _report(rep, feedback)
    feedback.pushInfo(f"POIs: {rep.used} of {rep.records} points counted in {len(names)} categories.")
    poi_names = poi_view.names_per_region(region_index, vals[1], reg.n) if name_field else None
    return counts, names, poi_names


def _line_ends(source, reg, context, feedback, weight_field, start, end):
    ct = QgsCoordinateTransform(source.sourceCrs(), reg.crs, context.transformContext())
    widx = source.fields().indexFromName(weight_field) if weight_field else -1
    o, d, w, no_geom = [], [], [], 0
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
        w.append(value(f.attribute(widx)) if widx >= 0 else 1.0)
    if no_geom:
        feedback.pushWarning(f"{no_geom} OD line(s) have no geometry; they were left out.")
    return o, d, (w if widx >= 0 else None)


def join_mobility(source, reg, context, feedback, origin_field="", destination_field="", count_field="",
                  start=10.0, end=15.0):
    """OD from lines (first/last vertex located in regions) or from a table of region ids."""
    if count_field:     # a text field of numbers (a CSV read without types) is fine: the counts are parsed
        field_or_fail(source, count_field, "MOBILITY_COUNT_FIELD", layer_param="MOBILITY layer")
    if bool(origin_field) != bool(destination_field):
        raise QgsProcessingException("Set both MOBILITY_ORIGIN_FIELD and MOBILITY_DESTINATION_FIELD (an OD "
                                     "table of region ids), or neither (OD lines: first and last vertex).")
    if origin_field:
        oi = field_or_fail(source, origin_field, "MOBILITY_ORIGIN_FIELD", layer_param="MOBILITY layer")
        di = field_or_fail(source, destination_field, "MOBILITY_DESTINATION_FIELD", layer_param="MOBILITY layer")
        ci = source.fields().indexFromName(count_field) if count_field else -1
        req = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes(
            [i for i in (oi, di, ci) if i >= 0])
        ov, dv, wv = [], [], []
        for f in walk(source, feedback, start, end, req):
            ov.append(value(f.attribute(oi)))
            dv.append(value(f.attribute(di)))
            if ci >= 0:
                wv.append(value(f.attribute(ci)))
        m, rep = mobility_view.od_from_ids(ov, dv, wv if ci >= 0 else None, reg.ids, reg.id_field)
    else:
        if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.LineGeometry:
            raise QgsProcessingException("The MOBILITY layer has no lines; expected OD lines (one line per trip "
                                         "or flow, first vertex = origin) or a table with "
                                         "MOBILITY_ORIGIN_FIELD and MOBILITY_DESTINATION_FIELD set.")
        o, d, w = _line_ends(source, reg, context, feedback, count_field, start, end)
        m, rep = mobility_view.od_matrix(o, d, w, reg.n)
    _report(rep, feedback)
    feedback.pushInfo(f"Mobility: {rep.used} of {rep.records} OD records, {m.sum():.0f} trips, "
                      f"{m.nnz} region pairs.")
    return m


def join_landuse(source, class_field, reg, context, feedback, start=15.0, end=20.0):
    """Area share of each land-use class in each region (intersection areas, metric CRS)."""
    if not class_field:
        raise QgsProcessingException("LANDUSE is set but LANDUSE_CLASS_FIELD is empty; choose the field that "
                                     "holds each polygon's land-use class.")
    cidx = field_or_fail(source, class_field, "LANDUSE_CLASS_FIELD", layer_param="LANDUSE layer")
    ct = QgsCoordinateTransform(source.sourceCrs(), reg.crs, context.transformContext())
    ridx, cls, area = [], [], []
    outside = 0
    for f in walk(source, feedback, start, end, every=50):
        g = QgsGeometry(f.geometry())
        if g.isNull() or g.isEmpty():
            outside += 1
            continue
        g.transform(ct)
        if not g.isGeosValid():
            g = g.makeValid()
        c = value(f.attribute(cidx))
        hit = False
        for i in sorted(reg.index.intersects(g.boundingBox())):
            if reg.engine(i).intersects(g.constGet()):
                a = reg.geoms[i].intersection(g).area()
                if a > 0:
                    ridx.append(i)
                    cls.append(c)
                    area.append(a)
                    hit = True
        if not hit:
            ridx.append(-1)
            cls.append(c)
            area.append(0.0)
    shares, names, rep = landuse_view.shares(ridx, cls, area, reg.n, region_areas=reg.areas)
    rep.outside += outside
    _report(rep, feedback)
    feedback.pushInfo(f"Land use: {len(names)} classes from {source.featureCount()} polygons; mean covered share of a region "
                      f"{shares.sum(1).mean():.2f}.")
    return shares, names


def numeric_fields(reg: Regions, names, param, feedback):
    cols = {}
    for name in names:
        idx = reg.fields.indexFromName(name)
        if idx < 0:
            raise QgsProcessingException(f"{param}: the field '{name}' is not in the region layer.")
        if reg.fields.at(idx).type() not in NUMERIC_TYPES:
            raise QgsProcessingException(f"{param}: the field '{name}' is of type "
                                         f"{reg.fields.at(idx).typeName()}; expected numeric fields. Choose "
                                         "numeric fields (or convert it with the Field Calculator).")
        cols[name] = reg.column(name)
    table, names, n_null = extra_view.numeric_table(cols, reg.n, what=f"{param} field")
    if n_null:
        feedback.pushWarning(f"{param}: {n_null} empty value(s) were read as 0.")
    return table, names


@dataclass
class ViewInputs:
    """Parsed view parameters of train_regions (sources may be None)."""

    pois: object = None
    poi_category_field: str = ""
    poi_name_field: str = ""
    mobility: object = None
    mobility_origin_field: str = ""
    mobility_destination_field: str = ""
    mobility_count_field: str = ""
    landuse: object = None
    landuse_class_field: str = ""
    landuse_fields: list = field(default_factory=list)
    extra_fields: list = field(default_factory=list)
    texts: dict = field(default_factory=dict)           # label -> (N,) strings from TEXT_FIELDS


def build_region_data(reg: Regions, inputs: ViewInputs, context, feedback, targets=None,
                      start=5.0, end=20.0) -> RegionData:
    """RegionData from the region layer and the view layers."""
    span = (end - start) / 4
    texts = dict(inputs.texts or {})
    poi = poi_names = lu = lu_names = mob = extra = extra_names = None
    if inputs.pois is not None:
        poi, poi_names, poi_texts = join_pois(inputs.pois, inputs.poi_category_field, reg, context, feedback,
                                              start, start + span, inputs.poi_name_field)
        if poi_texts is not None:
            texts["POIs"] = poi_texts
    if inputs.mobility is not None:
        mob = join_mobility(inputs.mobility, reg, context, feedback, inputs.mobility_origin_field,
                            inputs.mobility_destination_field, inputs.mobility_count_field,
                            start + span, start + 2 * span)
    if inputs.landuse is not None and inputs.landuse_fields:
        raise QgsProcessingException("Both LANDUSE (polygons) and LANDUSE_FIELDS (region fields) are set; "
                                     "choose one source of land use.")
    if inputs.landuse is not None:
        lu, lu_names = join_landuse(inputs.landuse, inputs.landuse_class_field, reg, context, feedback,
                                    start + 2 * span, start + 3 * span)
    elif inputs.landuse_fields:
        lu, lu_names = numeric_fields(reg, inputs.landuse_fields, "LANDUSE_FIELDS", feedback)
    if inputs.extra_fields:
        extra, extra_names = numeric_fields(reg, inputs.extra_fields, "EXTRA_FIELDS", feedback)
    check_cancel(feedback)
    adj = adjacency(reg, feedback)
    feedback.setProgress(end)
    data = RegionData(region_ids=reg.ids, centroids=reg.centroids_m, areas=reg.areas_m2, perimeters=reg.perimeters_m(),
                      crs=reg.crs.authid(),
                      poi_counts=poi, poi_categories=poi_names or [], landuse=lu, landuse_classes=lu_names or [],
                      mobility=mob, extra=extra, extra_names=extra_names or [], adjacency=adj,
                      targets=dict(targets or {}), names=reg.names, id_field=reg.id_field or FEATURE_ID,
                      texts=texts)
    return data.validate()
