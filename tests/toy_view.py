"""A toy view as a user would add it: this module (it would be ``topt_core/views/roads.py``) and one registry line.

The view declares its front-door inputs (``sources``) and nothing else: the QGIS dialog gets ``ROAD_FIELDS``,
the command line ``--road-fields``, the help texts its line, and both doors join the fields with the
``region_fields`` join and this view's ``build``. The tests add it with ``monkeypatch`` (``with_roads``),
which stands for the line ``REGISTRY = (poi.VIEW, landuse.VIEW, mobility.VIEW, extra.VIEW, roads.VIEW, ...)``.
"""
from __future__ import annotations

import numpy as np

from topt_core.views.base import TableView
from topt_core.views.extra import region_fields
from topt_core.views.inputs import Param, Source


# -- the module -------------------------------------------------------------------------------------

class RoadView(TableView):
    name, label, unit, facet_lead = "roads", "Road lengths", "road metres", "Roads"
    sources = (Source("region_fields", (
        Param("ROAD_FIELDS", "--road-fields", "fields", "Road length fields",
              "Numeric region fields holding the metres of road of each class.", numeric=True),),
        region_fields),)


VIEW = RoadView()


# -- the registry line, for a test ------------------------------------------------------------------

def add_to_registry(monkeypatch):
    """``views.REGISTRY`` with the toy view after the user's views (before the derived ones)."""
    from topt_core import views

    user = tuple(v for v in views.REGISTRY if not v.derived)
    derived = tuple(v for v in views.REGISTRY if v.derived)
    monkeypatch.setattr(views, "REGISTRY", user + (VIEW,) + derived)


# -- data a user could have -------------------------------------------------------------------------

def roads_files(folder, n=24, seed=0):
    """A GeoPackage: region squares with two road-length fields (``road_primary``, ``road_residential``), a text
    field and a target, and POI points. Returns (path, the (n, 2) road lengths)."""
    import geopandas as gpd
    from shapely.geometry import Point, box

    rng = np.random.default_rng(seed)
    x0, y0, side = 585000.0, 4511000.0, 500.0
    cells = [(x0 + (i % 5) * side, y0 + (i // 5) * side) for i in range(n)]
    roads = rng.gamma(2.0, 300.0, (n, 2))
    regions = gpd.GeoDataFrame({"region_id": [f"r{i}" for i in range(n)], "road_primary": roads[:, 0],
                                "road_residential": roads[:, 1], "crime": rng.random(n) * 100,
                                "label": [f"name {i}" for i in range(n)]},
                               geometry=[box(x, y, x + side, y + side) for x, y in cells], crs="EPSG:32618")
    k = rng.integers(0, n, 200)
    pois = gpd.GeoDataFrame({"category": [f"cat{j}" for j in rng.integers(0, 5, 200)]}, crs="EPSG:32618",
                            geometry=[Point(cells[i][0] + rng.uniform(1, side - 1),
                                            cells[i][1] + rng.uniform(1, side - 1)) for i in k])
    path = folder / "city.gpkg"
    regions.to_file(path, layer="regions", driver="GPKG")
    pois.to_file(path, layer="pois", driver="GPKG")
    return path, roads
