"""Choosing a metric CRS for distances (pure arithmetic, no GIS library).

Distances between regions must be in metres. When the user does not choose a
projected CRS, the UTM zone of the layer's centre (WGS84 lon/lat) is used.
"""
from __future__ import annotations

import math

from .errors import ToptDataError


def utm_epsg_for(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lon, lat); polar areas get UPS."""
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) > 90 or abs(lon) > 180:
        raise ToptDataError(f"Cannot choose a metric CRS: the layer centre ({lon}, {lat}) is not a valid "
                            "longitude/latitude. Check the layer's CRS, or set DISTANCE_CRS explicitly.")
    if lat >= 84:
        return 32661  # UPS North
    if lat <= -80:
        return 32761  # UPS South
    zone = int((lon + 180) // 6) + 1
    zone = min(max(zone, 1), 60)
    # Norway / Svalbard exceptions
    if 56 <= lat < 64 and 3 <= lon < 12:
        zone = 32
    if 72 <= lat < 84 and lon >= 0:
        if lon < 9:
            zone = 31
        elif lon < 21:
            zone = 33
        elif lon < 33:
            zone = 35
        elif lon < 42:
            zone = 37
    return (32600 if lat >= 0 else 32700) + zone


def ensure_proj_data() -> None:
    """Point pyproj at the system PROJ database when it cannot find it itself (a venv on Debian looks in
    the venv's share/proj and prints "Valid PROJ data directory not found" on every run)."""
    import os
    import sys

    if os.environ.get("PROJ_DATA") or os.environ.get("PROJ_LIB"):
        return
    for base in (sys.prefix, sys.base_prefix, "/usr", "/usr/local"):
        folder = os.path.join(base, "share", "proj")
        if os.path.isfile(os.path.join(folder, "proj.db")):
            os.environ["PROJ_DATA"] = folder
            return
