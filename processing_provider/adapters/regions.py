"""The region layer as read: features, ids, metric geometry, spatial index, adjacency.

Input layers are only read, never modified: geometries are copied before they are
reprojected or repaired.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature, QgsFields, QgsGeometry,
                       QgsPoint, QgsProcessingException, QgsRectangle, QgsSpatialIndex, QgsWkbTypes)

from topt_core import joins

from .crs import metres_per_unit, metric_crs
from .reading import CANCEL_EVERY, check_cancel, field_or_fail, read_features, value


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
    unit_m: float = 1.0                                # metres per CRS unit (centroids, areas are in CRS units)
    geoms: list = field(default_factory=list)          # metric QgsGeometry, or None when no geometry
    centroids: np.ndarray | None = None
    areas: np.ndarray | None = None
    perimeters: np.ndarray | None = None               # CRS units, like areas
    index: QgsSpatialIndex | None = None
    _engines: dict = field(default_factory=dict)

    @property
    def n(self):
        return len(self.features)

    @property
    def centroids_m(self):
        """Centroids in metres (the CRS's own unit may be feet)."""
        return self.centroids * self.unit_m

    @property
    def areas_m2(self):
        return self.areas * self.unit_m ** 2

    def perimeters_m(self):
        return None if self.perimeters is None else self.perimeters * self.unit_m

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
        return [value(f.attribute(idx)) for f in self.features]


def polygon_parts(features, feedback):
    """Regions from a layer of mixed geometries (a GeoJSON with polygons, collections, points, lines).

    Features with polygons (or collections holding some) keep their polygon parts, as multipolygons;
    the others are left out with a warning that says what the layer holds. No polygon at all: refused.
    """
    kinds, kept, dropped = {}, [], 0
    for f in features:
        g = f.geometry()
        kind = "empty geometries" if g.isNull() or g.isEmpty() else QgsWkbTypes.displayString(g.wkbType())
        kinds[kind] = kinds.get(kind, 0) + 1
        poly = None
        if not (g.isNull() or g.isEmpty()):
            parts = [p for p in g.asGeometryCollection() if p.type() == QgsWkbTypes.PolygonGeometry]
            poly = g if g.type() == QgsWkbTypes.PolygonGeometry else (QgsGeometry.collectGeometry(parts) if parts
                                                                       else None)
        if poly is None or poly.isNull() or poly.isEmpty():
            dropped += 1
            continue
        out = QgsFeature(f)
        out.setGeometry(poly if poly.isMultipart() else poly.convertToType(QgsWkbTypes.PolygonGeometry, True))
        kept.append(out)
    held = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    if not kept:
        raise QgsProcessingException(f"The region layer has no polygons (it holds {held}); expected a polygon "
                                     "layer. Choose a polygon layer of regions.")
    feedback.pushWarning(f"The region layer holds {held}. The polygon parts of {len(kept)} feature(s) are used "
                         f"as regions; {dropped} feature(s) without a polygon are left out of the run and the "
                         "output. To choose yourself, extract the polygons first (Extract by expression: "
                         "geometry_type($geometry) = 'Polygon', or Multipart to singleparts + Collect).")
    return kept, QgsWkbTypes.MultiPolygon


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
    wkb_type = source.wkbType()
    has_geom = QgsWkbTypes.geometryType(wkb_type) == QgsWkbTypes.PolygonGeometry
    mixed = any(f.hasGeometry() and f.geometry().type() != QgsWkbTypes.PolygonGeometry for f in features)
    if (not has_geom or mixed) and need_geometry:
        features, wkb_type = polygon_parts(features, feedback)
        has_geom, n = True, len(features)
    if id_field:
        idx = field_or_fail(source, id_field, "REGION_ID_FIELD", layer_param="region layer")
        ids = joins.normalise_ids([value(f.attribute(idx)) for f in features])
    else:
        ids = np.asarray([str(f.id()) for f in features])
    names = None
    if name_field:
        idx = field_or_fail(source, name_field, "REGION_NAME_FIELD", layer_param="region layer")
        names = np.asarray(["" if value(f.attribute(idx)) is None else str(value(f.attribute(idx)))
                            for f in features])
    reg = Regions(features=features, fields=QgsFields(source.fields()), wkb_type=wkb_type,
                  source_crs=source.sourceCrs(), ids=ids, id_field=id_field or "", names=names)
    if not has_geom:
        return reg
    crs = metric_crs(source, distance_crs, context, feedback)
    ct = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
    geoms, cents, areas, empty, fixed = [], np.zeros((n, 2)), np.zeros(n), [], 0
    perimeters = np.zeros(n)
    index = QgsSpatialIndex()
    for i, f in enumerate(features):
        if i % CANCEL_EVERY == 0:
            check_cancel(feedback)
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
        perimeters[i] = g.constGet().perimeter()          # (QgsGeometry.length() is 0 for polygons)
        geoms.append(g)
        index.addFeature(i, g.boundingBox())
    if empty:
        raise QgsProcessingException(f"{len(empty)} region(s) have no geometry (ids {list(empty[:5])}); "
                                     "every region needs a polygon. Remove them or run 'Fix geometries'.")
    if fixed:
        feedback.pushWarning(f"{fixed} region polygon(s) were invalid and were repaired (make valid) for "
                             "areas and spatial joins; the input layer is unchanged. Consider 'Fix geometries'.")
    reg.crs, reg.geoms, reg.centroids, reg.areas, reg.index = crs, geoms, cents, areas, index
    reg.perimeters = perimeters
    reg.unit_m = metres_per_unit(crs) or 1.0
    return reg


def adjacency(reg: Regions, feedback):
    """(2, E) touching/overlapping region pairs (prepared geometry); warns about identical polygons."""
    ii, jj, same = [], [], []
    for i, g in enumerate(reg.geoms):
        if i % 50 == 0:
            check_cancel(feedback)
        for j in reg.index.intersects(g.boundingBox()):
            if j > i and reg.engine(i).intersects(reg.geoms[j].constGet()):
                ii.append(i)
                jj.append(j)
                if reg.engine(i).isEqual(reg.geoms[j].constGet()):
                    same.append((i, j))
    warning = joins.duplicate_regions_warning(same, reg.ids)
    if warning:
        feedback.pushWarning(warning)
    return joins.adjacency_from_pairs(ii, jj, reg.n)


def field_or_fail_regions(reg: Regions, name: str, param: str) -> int:
    """The index of a field of the region layer, or a clear error."""
    idx = reg.fields.indexFromName(name)
    if idx < 0:
        raise QgsProcessingException(f"{param}: the field '{name}' is not in the region layer (fields: "
                                     f"{', '.join(reg.fields.names()[:20])}). Choose one of its fields.")
    return idx
