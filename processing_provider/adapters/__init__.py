"""QGIS layers <-> the engine: the only place that reads layers and writes sinks.

``reading`` (features, values, fields), ``crs`` (the metric CRS), ``regions`` (the region
layer, its geometry and adjacency), ``spatial_join`` (view layers -> ``RegionData``),
``sinks`` (results -> feature sinks) and ``styles`` (how loaded outputs look).
"""
