"""The metric CRS of a run: DISTANCE_CRS if set, else the UTM zone of the region layer's centre."""
from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProcessingException

from topt_core.crs import utm_epsg_for


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
