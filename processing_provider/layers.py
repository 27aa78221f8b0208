"""QGIS layers -> ``RegionData`` (and results -> feature sinks).

The adapter does only what needs QGIS: reading feature sources (thread-safe
``QgsProcessingFeatureSource``), reprojecting to a metric CRS with the
context's transform context, spatial joins with ``QgsSpatialIndex`` and
prepared GEOS engines, and writing sinks. Counting, weighting and validation
are ``topt_core.views``, shared with the geopandas front door
(``topt_core.io``), so both give the same ``RegionData``.

Input layers are only read, never modified.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature, QgsFeatureRequest,
                       QgsFeatureSink, QgsField, QgsFields, QgsGeometry, QgsPoint, QgsProcessingException,
                       QgsRectangle, QgsSpatialIndex, QgsWkbTypes)
from qgis.PyQt.QtCore import QVariant

from topt_core import views
from topt_core.crs import utm_epsg_for
from topt_core.data import RegionData
from topt_core.errors import ToptCancelled
from topt_core.io import safe_field_name  # noqa: F401  (shared with the CLI; used by the algorithms)

CANCEL_EVERY = 500
NUMERIC_TYPES = (QVariant.Int, QVariant.UInt, QVariant.LongLong, QVariant.ULongLong, QVariant.Double)
EMBEDDING_FIELD = re.compile(r"^emb_\d+$")


def _check_cancel(feedback):
    if feedback is not None and feedback.isCanceled():
        raise ToptCancelled("Cancelled by the user; nothing was written.")


def _value(v):
    """QVariant NULL -> None; everything else as Python."""
    if v is None:
        return None
    if isinstance(v, QVariant):
        return None if v.isNull() else v.value()
    return v


def _iter_features(source, request=None):
    """Features of a source without QGIS's invalid-geometry filter: this adapter repairs invalid polygons
    (make valid, with a warning) and reports null/empty geometries itself. Letting the filter abort from
    inside the Python iteration corrupted the interpreter ("SystemError: unknown opcode", segfaults) when it
    happened twice in one session (hostile matrix, issue 6)."""
    from qgis.core import QgsProcessingFeatureSource

    request = request if request is not None else QgsFeatureRequest()
    if isinstance(source, QgsProcessingFeatureSource):
        return source.getFeatures(request, QgsProcessingFeatureSource.FlagSkipGeometryValidityChecks)
    request.setInvalidGeometryCheck(QgsFeatureRequest.GeometryNoCheck)
    return source.getFeatures(request)


def _progress(feedback, start, end, i, total):
    if feedback is not None and total:
        feedback.setProgress(start + (end - start) * i / total)


def _walk(source, feedback, start, end, request=None, every=CANCEL_EVERY):
    """Features of a source (see ``_iter_features``), checking cancel and moving progress from
    ``start`` to ``end`` every ``every`` features: the one loop every reader here shares."""
    total = source.featureCount()
    for k, f in enumerate(_iter_features(source, request)):
        if k % every == 0:
            _check_cancel(feedback)
            _progress(feedback, start, end, k, total)
        yield f


# -- metric CRS ------------------------------------------------------------------------------------

def metric_crs(source, distance_crs, context, feedback, layer_name="REGIONS"):
    """The CRS distances and areas are computed in: DISTANCE_CRS, else the UTM zone of the layer centre."""
    if distance_crs is not None and distance_crs.isValid():
        if distance_crs.isGeographic():
            raise QgsProcessingException(
                f"DISTANCE_CRS {distance_crs.authid()} is geographic (degrees); distances and areas need a "
                "projected CRS in metres. Choose a projected CRS (e.g. the local UTM zone) or leave "
                "DISTANCE_CRS empty to use the UTM zone of the layer centre.")
        feedback.pushInfo(f"Distances and areas in {distance_crs.authid()} ({distance_crs.description()}), "
                          "as set by DISTANCE_CRS.")
        return distance_crs
    src = source.sourceCrs()
    if not src.isValid():
        raise QgsProcessingException(
            f"The {layer_name} layer has no CRS, so distances cannot be measured. Assign its CRS "
            "(Layer Properties > Source, or 'Assign projection'), or set DISTANCE_CRS.")
    ext = source.sourceExtent()
    if ext.isNull():
        raise QgsProcessingException(f"The {layer_name} layer has an empty extent; expected polygons. "
                                     "Check the layer, its filter and selection.")
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    try:
        centre = QgsCoordinateTransform(src, wgs84, context.transformContext()).transform(ext.center())
    except Exception as exc:
        raise QgsProcessingException(f"Cannot transform the {layer_name} layer centre to longitude/latitude "
                                     f"({exc}); check the layer's CRS or set DISTANCE_CRS.") from None
    epsg = utm_epsg_for(centre.x(), centre.y())
    crs = QgsCoordinateReferenceSystem(f"EPSG:{epsg}")
    feedback.pushInfo(f"Distances and areas in EPSG:{epsg} ({crs.description()}), the UTM zone of the layer "
                      f"centre ({centre.x():.4f}, {centre.y():.4f}); set DISTANCE_CRS to choose another.")
    return crs


# -- regions ---------------------------------------------------------------------------------------

@dataclass
class Regions:
    """The region layer as read: features (input order, source CRS) and metric geometry."""

    features: list
    fields: QgsFields
    wkb_type: int
    source_crs: QgsCoordinateReferenceSystem
    ids: np.ndarray
    id_field: str = ""
    names: np.ndarray | None = None
    crs: QgsCoordinateReferenceSystem | None = None
    geoms: list = field(default_factory=list)          # metric QgsGeometry, or None when no geometry
    centroids: np.ndarray | None = None
    areas: np.ndarray | None = None
    index: QgsSpatialIndex | None = None
    _engines: dict = field(default_factory=dict)

    @property
    def n(self):
        return len(self.features)

    def engine(self, i):
        eng = self._engines.get(i)
        if eng is None:
            eng = QgsGeometry.createGeometryEngine(self.geoms[i].constGet())
            eng.prepareGeometry()
            self._engines[i] = eng
        return eng

    def locate(self, x, y):
        """Rows of the regions containing metric point (x, y), lowest first."""
        hits = sorted(self.index.intersects(QgsRectangle(x, y, x, y)))
        if not hits:
            return []
        p = QgsPoint(x, y)
        return [i for i in hits if self.engine(i).intersects(p)]

    def column(self, name):
        idx = self.fields.indexFromName(name)
        return [_value(f.attribute(idx)) for f in self.features]


def field_or_fail(source, name, param, numeric=False, layer_param=None):
    idx = source.fields().indexFromName(name)
    if idx < 0:
        names = ", ".join(source.fields().names()[:20])
        raise QgsProcessingException(f"{param}: the field '{name}' is not in the {layer_param or 'layer'} "
                                     f"(fields: {names}). Choose one of its fields.")
    if numeric and source.fields().at(idx).type() not in NUMERIC_TYPES:
        raise QgsProcessingException(f"{param}: the field '{name}' is of type "
                                     f"{source.fields().at(idx).typeName()}; expected a numeric field. Choose a "
                                     "numeric field (or convert it with the Field Calculator).")
    return idx


def read_features(source, feedback, start=0.0, end=5.0, with_geometry=True):
    """All features of a source (copies), checking for cancel."""
    req = QgsFeatureRequest()
    if not with_geometry:
        req.setFlags(QgsFeatureRequest.NoGeometry)
    out = []
    for f in _walk(source, feedback, start, end, req):
        out.append(QgsFeature(f))
    return out


def read_regions(source, id_field, context, feedback, distance_crs=None, name_field="",
                 need_geometry=True, start=0.0, end=5.0) -> Regions:
    """Read the region layer; metric centroids/areas and a spatial index when it has polygons."""
    if source is None:
        raise QgsProcessingException("The region layer could not be read; expected a polygon layer. "
                                     "Check that the file exists and is a valid vector layer.")
    features = read_features(source, feedback, start, end)
    n = len(features)
    if n == 0:
        raise QgsProcessingException("The region layer has no features; expected at least 2 polygons. "
                                     "Check the layer, its filter and 'selected features only'.")
    if id_field:
        idx = field_or_fail(source, id_field, "REGION_ID_FIELD", layer_param="region layer")
        ids = views.normalise_ids([_value(f.attribute(idx)) for f in features])
    else:
        ids = np.asarray([str(f.id()) for f in features])
    names = None
    if name_field:
        idx = field_or_fail(source, name_field, "REGION_NAME_FIELD", layer_param="region layer")
        names = np.asarray(["" if _value(f.attribute(idx)) is None else str(_value(f.attribute(idx)))
                            for f in features])
    reg = Regions(features=features, fields=QgsFields(source.fields()), wkb_type=source.wkbType(),
                  source_crs=source.sourceCrs(), ids=ids, id_field=id_field or "", names=names)
    has_geom = QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.PolygonGeometry
    if not has_geom:
        if need_geometry:
            raise QgsProcessingException("The region layer has no polygons; expected a polygon layer. "
                                         "Choose a polygon layer of regions.")
        return reg
    crs = metric_crs(source, distance_crs, context, feedback)
    ct = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
    geoms, cents, areas, empty, fixed = [], np.zeros((n, 2)), np.zeros(n), [], 0
    index = QgsSpatialIndex()
    for i, f in enumerate(features):
        if i % CANCEL_EVERY == 0:
            _check_cancel(feedback)
        g = QgsGeometry(f.geometry())
        if g.isNull() or g.isEmpty():
            empty.append(ids[i])
            geoms.append(None)
            continue
        try:
            g.transform(ct)
        except Exception as exc:
            raise QgsProcessingException(f"Region {ids[i]} cannot be transformed to {crs.authid()} ({exc}); "
                                         "check the layer CRS or set DISTANCE_CRS.") from None
        if not g.isGeosValid():
            g2 = g.makeValid()
            if not g2.isNull() and not g2.isEmpty():
                g, fixed = g2, fixed + 1
        c = g.centroid().asPoint()
        cents[i] = (c.x(), c.y())
        areas[i] = g.area()
        geoms.append(g)
        index.addFeature(i, g.boundingBox())
    if empty:
        raise QgsProcessingException(f"{len(empty)} region(s) have no geometry (ids {list(empty[:5])}); "
                                     "every region needs a polygon. Remove them or run 'Fix geometries'.")
    if fixed:
        feedback.pushWarning(f"{fixed} region polygon(s) were invalid and were repaired (make valid) for "
                             "areas and spatial joins; the input layer is unchanged. Consider 'Fix geometries'.")
    reg.crs, reg.geoms, reg.centroids, reg.areas, reg.index = crs, geoms, cents, areas, index
    return reg


def adjacency(reg: Regions, feedback):
    """(2, E) touching/overlapping region pairs (prepared geometry)."""
    ii, jj = [], []
    for i, g in enumerate(reg.geoms):
        if i % 50 == 0:
            _check_cancel(feedback)
        for j in reg.index.intersects(g.boundingBox()):
            if j > i and reg.engine(i).intersects(reg.geoms[j].constGet()):
                ii.append(i)
                jj.append(j)
    return views.adjacency_from_pairs(ii, jj, reg.n)


# -- views -----------------------------------------------------------------------------------------

def _report(rep, feedback):
    for msg in rep.messages():
        feedback.pushWarning(msg)


def _points_xy(source, reg, context, feedback, start, end, value_fields=()):
    """Metric x/y of every point part, plus the requested attribute values of its feature."""
    ct = QgsCoordinateTransform(source.sourceCrs(), reg.crs, context.transformContext())
    idxs = [source.fields().indexFromName(f) for f in value_fields]
    req = QgsFeatureRequest().setSubsetOfAttributes(idxs)
    xs, ys, vals, no_geom = [], [], [[] for _ in idxs], 0
    for f in _walk(source, feedback, start, end, req):
        g = f.geometry()
        if g.isNull() or g.isEmpty():
            no_geom += 1
            continue
        row = [_value(f.attribute(i)) for i in idxs]
        for part in g.constParts():
            p = ct.transform(part.x(), part.y())
            xs.append(p.x())
            ys.append(p.y())
            for c, v in zip(vals, row):
                c.append(v)
    return np.asarray(xs), np.asarray(ys), vals, no_geom


def poi_view(source, category_field, reg, context, feedback, start=5.0, end=10.0):
    if not category_field:
        raise QgsProcessingException("POIS is set but POI_CATEGORY_FIELD is empty; choose the field that holds "
                                     "each point's category (e.g. 'amenity' or 'category').")
    field_or_fail(source, category_field, "POI_CATEGORY_FIELD", layer_param="POI layer")
    xs, ys, (cats,), no_geom = _points_xy(source, reg, context, feedback, start, end, [category_field])
    region_index = np.full(len(xs), -1, dtype=np.int64)
    ambiguous = 0
    for k in range(len(xs)):
        if k % CANCEL_EVERY == 0:
            _check_cancel(feedback)
        hits = reg.locate(xs[k], ys[k])
        if hits:
            region_index[k] = hits[0]
            ambiguous += len(hits) > 1
    counts, names, outside, null, rep = views.poi_counts(region_index, cats, reg.n)
    if no_geom:
        feedback.pushWarning(f"{no_geom} POI feature(s) have no geometry; they were left out.")
    if ambiguous:
        feedback.pushInfo(f"{ambiguous} POI point(s) lie in more than one region (overlapping polygons or on a "
                          "shared edge); each was counted once, in the first region.")
    _report(rep, feedback)
    feedback.pushInfo(f"POIs: {rep.used} of {rep.records} points counted in {len(names)} categories.")
    return counts, names


def _line_ends(source, reg, context, feedback, weight_field, start, end):
    ct = QgsCoordinateTransform(source.sourceCrs(), reg.crs, context.transformContext())
    widx = source.fields().indexFromName(weight_field) if weight_field else -1
    o, d, w, no_geom = [], [], [], 0
    for f in _walk(source, feedback, start, end):
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
        w.append(_value(f.attribute(widx)) if widx >= 0 else 1.0)
    if no_geom:
        feedback.pushWarning(f"{no_geom} OD line(s) have no geometry; they were left out.")
    return o, d, (w if widx >= 0 else None)


def mobility_view(source, reg, context, feedback, origin_field="", destination_field="", count_field="",
                  start=10.0, end=15.0):
    """OD from lines (first/last vertex located in regions) or from a table of region ids."""
    if count_field:
        field_or_fail(source, count_field, "MOBILITY_COUNT_FIELD", numeric=True, layer_param="MOBILITY layer")
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
        for f in _walk(source, feedback, start, end, req):
            ov.append(_value(f.attribute(oi)))
            dv.append(_value(f.attribute(di)))
            if ci >= 0:
                wv.append(_value(f.attribute(ci)))
        o, d = views.index_of(ov, reg.ids), views.index_of(dv, reg.ids)
        unknown = []
        for vals, idx in ((ov, o), (dv, d)):
            for v, i in zip(vals, idx):
                if i < 0 and len(unknown) < 5 and views.id_string(v) not in unknown:
                    unknown.append(views.id_string(v))
        m, rep = views.od_matrix(o, d, wv if ci >= 0 else None, reg.n, unknown_examples=unknown)
        if rep.outside and rep.outside == rep.records:
            raise QgsProcessingException(
                f"None of the {rep.records} OD records has origin and destination among the region ids "
                f"(e.g. {unknown[:3]} vs region ids {list(reg.ids[:3])}); expected ids from "
                f"{'REGION_ID_FIELD ' + repr(reg.id_field) if reg.id_field else 'the region feature ids'}. "
                "Set REGION_ID_FIELD to the field the OD table refers to.")
    else:
        if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.LineGeometry:
            raise QgsProcessingException("The MOBILITY layer has no lines; expected OD lines (one line per trip "
                                         "or flow, first vertex = origin) or a table with "
                                         "MOBILITY_ORIGIN_FIELD and MOBILITY_DESTINATION_FIELD set.")
        o, d, w = _line_ends(source, reg, context, feedback, count_field, start, end)
        m, rep = views.od_matrix(o, d, w, reg.n)
    _report(rep, feedback)
    feedback.pushInfo(f"Mobility: {rep.used} of {rep.records} OD records, {m.sum():.0f} trips, "
                      f"{m.nnz} region pairs.")
    return m


def landuse_view(source, class_field, reg, context, feedback, start=15.0, end=20.0):
    """Area share of each land-use class in each region (intersection areas, metric CRS)."""
    if not class_field:
        raise QgsProcessingException("LANDUSE is set but LANDUSE_CLASS_FIELD is empty; choose the field that "
                                     "holds each polygon's land-use class.")
    cidx = field_or_fail(source, class_field, "LANDUSE_CLASS_FIELD", layer_param="LANDUSE layer")
    ct = QgsCoordinateTransform(source.sourceCrs(), reg.crs, context.transformContext())
    ridx, cls, area = [], [], []
    outside = 0
    for f in _walk(source, feedback, start, end, every=50):
        g = QgsGeometry(f.geometry())
        if g.isNull() or g.isEmpty():
            outside += 1
            continue
        g.transform(ct)
        if not g.isGeosValid():
            g = g.makeValid()
        c = _value(f.attribute(cidx))
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
    shares, names, rep = views.landuse_shares(ridx, cls, area, reg.n, region_areas=reg.areas)
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
    table, names, n_null = views.numeric_table(cols, reg.n, what=f"{param} field")
    if n_null:
        feedback.pushWarning(f"{param}: {n_null} empty value(s) were read as 0.")
    return table, names


@dataclass
class ViewInputs:
    """Parsed view parameters of train_regions (sources may be None)."""

    pois: object = None
    poi_category_field: str = ""
    mobility: object = None
    mobility_origin_field: str = ""
    mobility_destination_field: str = ""
    mobility_count_field: str = ""
    landuse: object = None
    landuse_class_field: str = ""
    landuse_fields: list = field(default_factory=list)
    extra_fields: list = field(default_factory=list)


def build_region_data(reg: Regions, inputs: ViewInputs, context, feedback, targets=None,
                      start=5.0, end=20.0) -> RegionData:
    """RegionData from the region layer and the view layers."""
    span = (end - start) / 4
    poi = poi_names = lu = lu_names = mob = extra = extra_names = None
    if inputs.pois is not None:
        poi, poi_names = poi_view(inputs.pois, inputs.poi_category_field, reg, context, feedback,
                                  start, start + span)
    if inputs.mobility is not None:
        mob = mobility_view(inputs.mobility, reg, context, feedback, inputs.mobility_origin_field,
                            inputs.mobility_destination_field, inputs.mobility_count_field,
                            start + span, start + 2 * span)
    if inputs.landuse is not None and inputs.landuse_fields:
        raise QgsProcessingException("Both LANDUSE (polygons) and LANDUSE_FIELDS (region fields) are set; "
                                     "choose one source of land use.")
    if inputs.landuse is not None:
        lu, lu_names = landuse_view(inputs.landuse, inputs.landuse_class_field, reg, context, feedback,
                                    start + 2 * span, start + 3 * span)
    elif inputs.landuse_fields:
        lu, lu_names = numeric_fields(reg, inputs.landuse_fields, "LANDUSE_FIELDS", feedback)
    if inputs.extra_fields:
        extra, extra_names = numeric_fields(reg, inputs.extra_fields, "EXTRA_FIELDS", feedback)
    _check_cancel(feedback)
    adj = adjacency(reg, feedback)
    feedback.setProgress(end)
    data = RegionData(region_ids=reg.ids, centroids=reg.centroids, areas=reg.areas, crs=reg.crs.authid(),
                      poi_counts=poi, poi_categories=poi_names or [], landuse=lu, landuse_classes=lu_names or [],
                      mobility=mob, extra=extra, extra_names=extra_names or [], adjacency=adj,
                      targets=dict(targets or {}), names=reg.names)
    return data.validate()


# -- embeddings and targets from a layer ---------------------------------------------------------

def embedding_fields(fields: QgsFields, chosen=None, param="EMBEDDING_FIELDS"):
    """Chosen numeric fields, or all emb_NNN fields in order."""
    if chosen:
        for name in chosen:
            idx = fields.indexFromName(name)
            if idx < 0:
                raise QgsProcessingException(f"{param}: the field '{name}' is not in the input layer.")
            if fields.at(idx).type() not in NUMERIC_TYPES:
                raise QgsProcessingException(f"{param}: the field '{name}' is of type "
                                             f"{fields.at(idx).typeName()}; expected numeric embedding fields.")
        return list(chosen)
    return [f.name() for f in fields if EMBEDDING_FIELD.match(f.name()) and f.type() in NUMERIC_TYPES]


def matrix(features, fields: QgsFields, names, param, allow_null=False):
    """(N, K) float matrix of the named fields; nulls -> NaN (refused unless allow_null)."""
    idx = [fields.indexFromName(n) for n in names]
    out = np.full((len(features), len(names)), np.nan)
    for r, f in enumerate(features):
        for c, i in enumerate(idx):
            v = _value(f.attribute(i))
            if v is not None:
                try:
                    out[r, c] = float(v)
                except (TypeError, ValueError):
                    raise QgsProcessingException(f"{param}: field '{names[c]}' holds {v!r} on feature {f.id()}; "
                                                 "expected numbers. Choose a numeric field.") from None
    if not allow_null and not np.isfinite(out).all():
        bad = int((~np.isfinite(out).all(1)).sum())
        raise QgsProcessingException(f"{param}: {bad} feature(s) have empty or non-finite values in "
                                     f"{', '.join(names[:3])}{'...' if len(names) > 3 else ''}; expected a value "
                                     "on every feature. Re-run train_regions or fill the gaps.")
    return out


def numeric_field_names(fields: QgsFields):
    return [f.name() for f in fields if f.type() in NUMERIC_TYPES]


# -- output ----------------------------------------------------------------------------------------

def output_fields(in_fields: QgsFields, new_fields, feedback=None):
    """Input fields (minus any whose name a new field takes) + new fields; also the kept input indices."""
    new_names = {f.name().lower() for f in new_fields}
    out, keep, replaced = QgsFields(), [], []
    for i, f in enumerate(in_fields):
        if f.name().lower() in new_names:
            replaced.append(f.name())
            continue
        out.append(QgsField(f))
        keep.append(i)
    for f in new_fields:
        out.append(f)
    if replaced and feedback is not None:
        feedback.pushInfo(f"The input fields {', '.join(replaced[:5])}{'...' if len(replaced) > 5 else ''} "
                          "are replaced by the new values of the same name in the output (the input layer is "
                          "unchanged).")
    return out, keep


def double_field(name):
    return QgsField(name, QVariant.Double, "double", 20, 8)


def int_field(name):
    return QgsField(name, QVariant.Int, "integer", 10)


def write_sink(alg, parameters, context, feedback, param, features, in_fields, new_fields, values,
               wkb_type, crs):
    """Write all features at once: kept input attributes + ``values`` (rows of Python values)."""
    _check_cancel(feedback)
    fields, keep = output_fields(in_fields, new_fields, feedback)
    sink, dest_id = alg.parameterAsSink(parameters, param, context, fields, wkb_type, crs)
    if sink is None:
        raise QgsProcessingException(alg.invalidSinkError(parameters, param))
    for r, f in enumerate(features):
        out = QgsFeature(fields)
        if f.hasGeometry():
            out.setGeometry(f.geometry())
        attrs = f.attributes()
        out.setAttributes([attrs[i] for i in keep] + [None if v is None else _py(v) for v in values[r]])
        if not sink.addFeature(out, QgsFeatureSink.FastInsert):
            raise QgsProcessingException(f"Could not write feature {r} to {param}: "
                                         f"{sink.lastError() if hasattr(sink, 'lastError') else ''}")
    close_sink(sink)
    del sink
    return dest_id


def close_sink(sink):
    """Flush a feature sink now. A file sink is finished only when its last reference goes; callers
    also ``del`` theirs, so the file is complete when processing.run returns, not at some later GC."""
    flush = getattr(sink, "flushBuffer", None)
    if flush is not None:
        flush()


def _py(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if np.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return int(bool(v))
    return v
