"""Reading QGIS feature sources: values, features, fields, with cancel and progress.

The one loop every reader shares (``walk``), QVariant NULL handling, and the field checks
that give the what/expected/how messages.
"""
from __future__ import annotations

import re

import numpy as np
from qgis.core import QgsFeature, QgsFeatureRequest, QgsFields, QgsProcessingException
from qgis.PyQt.QtCore import QVariant

from topt_core.errors import ToptCancelled

CANCEL_EVERY = 500
NUMERIC_TYPES = (QVariant.Int, QVariant.UInt, QVariant.LongLong, QVariant.ULongLong, QVariant.Double)
EMBEDDING_FIELD = re.compile(r"^emb_\d+$")


def check_cancel(feedback):
    if feedback is not None and feedback.isCanceled():
        raise ToptCancelled("Cancelled by the user; nothing was written.")


def value(v):
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


def walk(source, feedback, start, end, request=None, every=CANCEL_EVERY):
    """Features of a source (see ``_iter_features``), checking cancel and moving progress from
    ``start`` to ``end`` every ``every`` features: the one loop every reader here shares."""
    total = source.featureCount()
    for k, f in enumerate(_iter_features(source, request)):
        if k % every == 0:
            check_cancel(feedback)
            _progress(feedback, start, end, k, total)
        yield f


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
    for f in walk(source, feedback, start, end, req):
        out.append(QgsFeature(f))
    return out


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
            v = value(f.attribute(i))
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


def polygon_rings(features):
    """Per feature the exterior rings of its polygon parts as (K, 2) arrays, for the report maps;
    None when no feature has a polygon."""
    from qgis.core import QgsWkbTypes

    out, any_poly = [], False
    for f in features:
        rings = []
        g = f.geometry() if f.hasGeometry() else None
        if g is not None and g.type() == QgsWkbTypes.PolygonGeometry:
            polys = g.asMultiPolygon() if g.isMultipart() else [g.asPolygon()]
            rings = [np.asarray([(p.x(), p.y()) for p in poly[0]]) for poly in polys if poly]
        any_poly = any_poly or bool(rings)
        out.append(rings)
    return out if any_poly else None
