"""Writing results: input fields plus new fields into a feature sink, flushed before return."""
from __future__ import annotations

import numpy as np
from qgis.core import QgsFeature, QgsFeatureSink, QgsField, QgsFields, QgsProcessingException
from qgis.PyQt.QtCore import QVariant

from .reading import check_cancel


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


def text_field(name):
    return QgsField(name, QVariant.String, "string", 254)


def int_field(name):
    return QgsField(name, QVariant.Int, "integer", 10)


def write_sink(alg, parameters, context, feedback, param, features, in_fields, new_fields, values,
               wkb_type, crs):
    """Write all features at once: kept input attributes + ``values`` (rows of Python values)."""
    check_cancel(feedback)
    fields, keep = output_fields(in_fields, new_fields, feedback)
    sink, dest_id = alg.parameterAsSink(parameters, param, context, fields, wkb_type, crs)
    if sink is None:
        raise QgsProcessingException(alg.invalidSinkError(parameters, param))
    for r, f in enumerate(features):
        out = QgsFeature(fields)
        if f.hasGeometry():
            out.setGeometry(f.geometry())
        attrs = f.attributes()
        out.setAttributes([attrs[i] for i in keep] + [None if v is None else py_value(v) for v in values[r]])
        if not sink.addFeature(out, QgsFeatureSink.FastInsert):
            raise QgsProcessingException(f"Could not write feature {r} to {param}: "
                                         f"{sink.lastError() if hasattr(sink, 'lastError') else ''}")
    close_sink(sink)
    del sink
    csv_types(dest_id, fields, feedback)
    return dest_id


def csv_types(dest_id, fields, feedback=None) -> bool:
    """A CSV output gets a .csvt sidecar with the field types, so QGIS (and Predict) reads its numbers as
    numbers, not text; and the user hears that CSV keeps no geometry."""
    path = str(dest_id or "").split("|", 1)[0]
    if not path.lower().endswith(".csv"):
        return False
    kinds = {QVariant.Int: "Integer", QVariant.UInt: "Integer", QVariant.LongLong: "Integer64",
             QVariant.ULongLong: "Integer64", QVariant.Double: "Real"}
    from topt_core.files import write_text

    write_text(path + "t", ",".join(f'"{kinds.get(f.type(), "String")}"' for f in fields) + "\n")
    if feedback is not None:
        feedback.pushWarning(f"{path} is a CSV table: it keeps no polygons (choose a GeoPackage to get a map "
                             "layer). Its field types are written to a .csvt file next to it, so the numbers read "
                             "back as numbers; 'Predict a region attribute' can use it with the model folder.")
    return True


def close_sink(sink):
    """Flush a feature sink now. A file sink is finished only when its last reference goes; callers
    also ``del`` theirs, so the file is complete when processing.run returns, not at some later GC."""
    flush = getattr(sink, "flushBuffer", None)
    if flush is not None:
        flush()


def py_value(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if np.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return int(bool(v))
    return v


def _write_line_sink(alg, parameters, context, feedback, param, features, crs, columns, rows):
    """Straight lines between points on surface of ``features``; ``rows``: (source row, target row,
    attributes) with ``columns`` [(name, QVariant type)]. Pairs without geometry are skipped."""
    from qgis.core import QgsGeometry, QgsPointXY, QgsWkbTypes

    check_cancel(feedback)
    fields = QgsFields()
    for name, kind in columns:
        fields.append(QgsField(name, kind))
    sink, dest = alg.parameterAsSink(parameters, param, context, fields, QgsWkbTypes.LineString, crs)
    if sink is None:
        raise QgsProcessingException(alg.invalidSinkError(parameters, param))
    anchor = [f.geometry().pointOnSurface().asPoint() if f.hasGeometry() else None for f in features]
    for k, (s, t, attrs) in enumerate(rows):
        if k % 5000 == 0:
            check_cancel(feedback)
        if anchor[s] is None or anchor[t] is None:
            continue
        f = QgsFeature(fields)
        f.setGeometry(QgsGeometry.fromPolylineXY([QgsPointXY(anchor[s]), QgsPointXY(anchor[t])]))
        f.setAttributes(attrs)
        sink.addFeature(f, QgsFeatureSink.FastInsert)
    close_sink(sink)
    del sink
    return dest


def write_lines(alg, parameters, context, feedback, param, reg, links, region_ids):
    """The attention links as lines from the attended region (source) to the attending one (target)."""
    rows = ((int(s), int(t), [str(region_ids[int(s)]), str(region_ids[int(t)]), float(w), int(r), float(d), int(bool(o))])
            for s, t, w, r, d, o in zip(links.source, links.target, links.weight, links.rank, links.distance_m,
                                         links.od_flow))
    return _write_line_sink(alg, parameters, context, feedback, param, reg.features, reg.source_crs,
                            [("source_id", QVariant.String), ("target_id", QVariant.String),
                             ("weight", QVariant.Double), ("rank", QVariant.Int), ("distance_m", QVariant.Double),
                             ("od_flow", QVariant.Int)], rows)


def write_evidence(alg, parameters, context, feedback, param, features, crs, tgt, src, weights, region_ids):
    """Lines from each region's strongest labelled neighbours (source) to the region (target)."""
    rows = ((int(s), int(t), [str(region_ids[int(s)]), str(region_ids[int(t)]), float(w)])
            for t, s, w in zip(tgt, src, weights))
    return _write_line_sink(alg, parameters, context, feedback, param, features, crs,
                            [("source_id", QVariant.String), ("target_id", QVariant.String),
                             ("weight", QVariant.Double)], rows)
