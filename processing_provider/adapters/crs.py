"""The metric CRS of a run: DISTANCE_CRS if set, else the UTM zone of the region layer's centre."""
from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProcessingException, QgsUnitTypes

from topt_core.crs import utm_epsg_for


def metric_crs(source, distance_crs, context, feedback, layer_name="REGIONS"):
    """The CRS distances and areas are computed in: DISTANCE_CRS, else the UTM zone of the layer centre."""
    if distance_crs is not None and distance_crs.isValid():
        if distance_crs.isGeographic():
            raise QgsProcessingException(
                f"DISTANCE_CRS {distance_crs.authid()} is geographic (degrees); distances and areas need a "
                "projected CRS in metres. Choose a projected CRS (e.g. the local UTM zone) or leave "
                "DISTANCE_CRS empty to use the UTM zone of the layer centre.")
        factor = metres_per_unit(distance_crs)
        unit = QgsUnitTypes.toString(distance_crs.mapUnits())
        if factor is None:
            raise QgsProcessingException(
                f"DISTANCE_CRS {distance_crs.authid()} measures in {unit or 'unknown units'}, which cannot be "
                "converted to metres; expected a projected CRS in metres or feet. Choose another CRS or leave "
                "DISTANCE_CRS empty to use the UTM zone of the layer centre.")
        converted = "" if factor == 1.0 else f"; its unit ({unit}) is converted to metres (1 unit = {factor:.7g} m)"
        feedback.pushInfo(f"Distances and areas in {distance_crs.authid()} ({distance_crs.description()}), "
                          f"as set by DISTANCE_CRS{converted}.")
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


def metres_per_unit(crs) -> float | None:
    """Metres per map unit of a projected CRS (0.3048006 for US survey feet); None if not a length."""
    unit = crs.mapUnits()
    if unit in (QgsUnitTypes.DistanceDegrees, QgsUnitTypes.DistanceUnknownUnit):
        return None
    factor = QgsUnitTypes.fromUnitToUnitFactor(unit, QgsUnitTypes.DistanceMeters)
    return float(factor) if factor and factor > 0 else None
