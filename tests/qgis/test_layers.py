"""processing_provider.layers: QGIS layers -> RegionData, against the benchmark arrays."""
import numpy as np
import pytest
from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry, QgsPointXY,
                       QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback, QgsProject,
                       QgsVectorLayer, QgsProcessingFeatureSource)

from topt_test_helpers import LU_FIELDS, uri


class Recorder(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.warnings = [], []

    def pushInfo(self, text):  # noqa: N802
        self.infos.append(text)

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)


_ALIVE = []   # a feature source holds raw pointers to its layer and context: keep both alive


def source(layer):
    ctx = QgsProcessingContext()
    _ALIVE.append((layer, ctx))
    return QgsProcessingFeatureSource(layer, ctx)


def ogr(gpkg, name):
    lyr = QgsVectorLayer(uri(gpkg, name), name, "ogr")
    assert lyr.isValid()
    return lyr


def join(view, reg, ctx, fb, **params):
    """One view's rows through the adapter's registry loop: its declared parameters (QGIS ids in lower case)."""
    from topt.processing_provider.adapters import spatial_join

    values = spatial_join.ViewInputs(**params).values
    (v, src), = [(v, s) for v, s in spatial_join.chosen_sources(values) if v.name == view]
    return spatial_join.view_rows(v, src, values, reg, ctx, fb)


@pytest.fixture(scope="module")
def sample_data(qgis_app, sample_copy):
    from topt.processing_provider.adapters import regions, spatial_join

    ctx, fb = QgsProcessingContext(), Recorder()
    ctx.setProject(QgsProject.instance())
    reg = regions.read_regions(source(ogr(sample_copy, "regions")), "region_id", ctx, fb)
    inputs = spatial_join.ViewInputs(pois=source(ogr(sample_copy, "pois")), poi_category_field="category",
                               mobility=source(ogr(sample_copy, "od")), mobility_origin_field="origin_id",
                               mobility_destination_field="destination_id", mobility_count_field="trips",
                               landuse_fields=LU_FIELDS)
    return spatial_join.build_region_data(reg, inputs, ctx, fb), fb


def test_views_from_layers_equal_the_benchmark_arrays(sample_data, shared_data):
    from topt_core.benchmark import load_manhattan

    data, fb = sample_data
    bench = load_manhattan(shared_data)
    assert data.region_ids.tolist() == bench.region_ids.tolist()
    assert data.crs == "EPSG:32618" == bench.crs
    # POIs: every non-empty benchmark category is reproduced exactly (category 6 has no POI in Manhattan-180,
    # so a point layer cannot carry it)
    keep = bench.poi_counts.sum(0) > 0
    assert data.poi_categories == [f"cat_{j:02d}" for j in np.flatnonzero(keep)]
    np.testing.assert_array_equal(data.poi_counts, bench.poi_counts[:, keep])
    np.testing.assert_array_equal(data.landuse, bench.landuse)
    np.testing.assert_array_equal(data.mobility.toarray(), bench.mobility.toarray())
    np.testing.assert_allclose(data.centroids, bench.centroids, rtol=0, atol=1e-3)
    np.testing.assert_allclose(data.areas, bench.areas, rtol=1e-7)
    edges = lambda a: sorted(map(tuple, np.asarray(a).T.tolist()))  # noqa: E731
    from topt_core.spatial import symmetrise

    assert edges(data.adjacency) == edges(symmetrise(bench.adjacency, bench.n))
    assert any("EPSG:32618" in m for m in fb.infos)
    assert not fb.warnings


def memory_points(points, crs="EPSG:4326"):
    lyr = QgsVectorLayer(f"Point?crs={crs}&field=category:string", "pts", "memory")
    feats = []
    for (x, y), cat in points:
        f = QgsFeature(lyr.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        f.setAttributes([cat])
        feats.append(f)
    lyr.dataProvider().addFeatures(feats)
    return lyr


def squares(n=3, crs="EPSG:32618", x0=580000, y0=4500000, size=1000, extra=""):
    lyr = QgsVectorLayer(f"Polygon?crs={crs}&field=rid:string&field=pop:double{extra}", "sq", "memory")
    feats = []
    for i in range(n):
        f = QgsFeature(lyr.fields())
        x = x0 + i * size
        f.setGeometry(QgsGeometry.fromRect_(x, y0, x + size, y0 + size) if hasattr(QgsGeometry, "fromRect_")
                      else QgsGeometry.fromWkt(f"POLYGON(({x} {y0},{x + size} {y0},{x + size} {y0 + size},"
                                               f"{x} {y0 + size},{x} {y0}))"))
        f.setAttributes([f"r{i}", float(10 * i)])
        feats.append(f)
    lyr.dataProvider().addFeatures(feats)
    return lyr


def test_points_outside_and_null_categories_are_reported(qgis_app):
    from topt.processing_provider.adapters import regions, spatial_join

    ctx, fb = QgsProcessingContext(), Recorder()
    reg = regions.read_regions(source(squares()), "rid", ctx, fb)
    pts = memory_points([((580500, 4500500), "a"), ((581500, 4500500), "b"), ((581600, 4500500), None),
                         ((590000, 4500500), "a")], crs="EPSG:32618")
    rows = join("poi", reg, ctx, fb, pois=source(pts), poi_category_field="category")
    counts, names = rows.values, rows.columns
    assert names == ["a", "b"] and counts.tolist() == [[1, 0], [0, 1], [0, 0]]
    text = " ".join(fb.warnings)
    assert "1 of 4 POI points lie outside every region" in text and "empty category" in text
    # adjacency: the three squares touch in a row
    assert sorted(map(tuple, regions.adjacency(reg, fb).T.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]


def test_od_lines_first_and_last_vertex_and_unknown_ids(qgis_app):
    from topt.processing_provider.adapters import regions, spatial_join

    ctx, fb = QgsProcessingContext(), Recorder()
    reg = regions.read_regions(source(squares()), "rid", ctx, fb)
    lines = QgsVectorLayer("LineString?crs=EPSG:32618&field=n:integer", "od", "memory")
    feats = []
    for (x1, x2, n) in ((580500, 582500, 3), (582500, 580500, 2), (580500, 599999, 9), (581200, 581800, 4)):
        f = QgsFeature(lines.fields())
        f.setGeometry(QgsGeometry.fromWkt(f"LINESTRING({x1} 4500500, 585000 4509000, {x2} 4500500)"))
        f.setAttributes([n])
        feats.append(f)
    lines.dataProvider().addFeatures(feats)
    m = join("mobility", reg, ctx, fb, mobility=source(lines), mobility_count_field="n").values
    assert m.toarray().tolist() == [[0, 0, 3], [0, 4, 0], [2, 0, 0]]
    assert any("1 of 4 OD records" in w for w in fb.warnings)
    # table mode with ids that do not exist
    table = QgsVectorLayer("None?field=o:string&field=d:string&field=t:double", "t", "memory")
    feats = []
    for o, d, t in (("r0", "r1", 5.0), ("r9", "r1", 1.0), ("r2", "r0", 2.0)):
        f = QgsFeature(table.fields())
        f.setAttributes([o, d, t])
        feats.append(f)
    table.dataProvider().addFeatures(feats)
    fb = Recorder()
    od = dict(mobility_origin_field="o", mobility_destination_field="d", mobility_count_field="t")
    m = join("mobility", reg, ctx, fb, mobility=source(table), **od).values
    assert m.toarray().tolist() == [[0, 5, 0], [0, 0, 0], [2, 0, 0]]
    assert any("r9" in w for w in fb.warnings)
    from topt_core.errors import ToptDataError

    with pytest.raises(ToptDataError, match="MOBILITY_DESTINATION_FIELD"):      # the algorithms' bridge shows it
        join("mobility", reg, ctx, fb, mobility=source(table), **{**od, "mobility_destination_field": ""})

    with pytest.raises(ToptDataError, match="None of the 3 OD records"):    # the algorithms' bridge shows it
        reg_other = regions.read_regions(source(squares()), "", ctx, fb)   # feature ids 1..3, not r0..r2
        join("mobility", reg_other, ctx, fb, mobility=source(table), **od)


def test_landuse_polygons_area_shares(qgis_app):
    from topt.processing_provider.adapters import regions, spatial_join

    ctx, fb = QgsProcessingContext(), Recorder()
    reg = regions.read_regions(source(squares(2)), "rid", ctx, fb)
    lu = QgsVectorLayer("Polygon?crs=EPSG:32618&field=cls:string", "lu", "memory")
    feats = []
    for wkt, cls in (("POLYGON((580000 4500000,580500 4500000,580500 4501000,580000 4501000,580000 4500000))", "park"),
                     ("POLYGON((580500 4500000,581500 4500000,581500 4500500,580500 4500500,580500 4500000))", "res")):
        f = QgsFeature(lu.fields())
        f.setGeometry(QgsGeometry.fromWkt(wkt))
        f.setAttributes([cls])
        feats.append(f)
    lu.dataProvider().addFeatures(feats)
    rows = join("landuse", reg, ctx, fb, landuse=source(lu), landuse_class_field="cls")
    shares, names = rows.values, rows.columns
    assert names == ["park", "res"]
    np.testing.assert_allclose(shares, [[0.5, 0.25], [0.0, 0.25]])


def test_metric_crs_choice_and_refusals(qgis_app):
    from topt.processing_provider.adapters import regions, spatial_join

    ctx, fb = QgsProcessingContext(), Recorder()
    sq = squares()
    reg = regions.read_regions(source(sq), "rid", ctx, fb, distance_crs=QgsCoordinateReferenceSystem("EPSG:3857"))
    assert reg.crs.authid() == "EPSG:3857"
    with pytest.raises(QgsProcessingException, match="geographic"):
        regions.read_regions(source(sq), "rid", ctx, fb, distance_crs=QgsCoordinateReferenceSystem("EPSG:4326"))
    with pytest.raises(QgsProcessingException, match="REGION_ID_FIELD"):
        regions.read_regions(source(sq), "nope", ctx, fb)
    pts = memory_points([((580500, 4500500), "a")], crs="EPSG:32618")
    from topt_core.errors import ToptDataError

    with pytest.raises(ToptDataError, match="POIS is set but POI_CATEGORY_FIELD is empty"):
        join("poi", reg, ctx, fb, pois=source(pts), poi_category_field="")


def test_safe_field_names():
    from topt_core.naming import safe_field_name

    assert safe_field_name("Crime Count (2019)") == "crime_count_2019"
    assert safe_field_name("2019 value") == "f_2019_value"
    assert safe_field_name("x" * 100, max_len=58) == "x" * 58
    assert safe_field_name("äöü") == "value"


def test_od_lines_reproduce_the_od_table(sample_data, sample_copy):
    from topt.processing_provider.adapters import regions, spatial_join

    data, _ = sample_data
    ctx, fb = QgsProcessingContext(), Recorder()
    reg = regions.read_regions(source(ogr(sample_copy, "regions")), "region_id", ctx, fb)
    region_layer, od = ogr(sample_copy, "regions"), ogr(sample_copy, "od")
    inside = {f["region_id"]: f.geometry().pointOnSurface().asPoint() for f in region_layer.getFeatures()}
    lines = QgsVectorLayer("MultiLineString?crs=EPSG:4326&field=trips:integer", "l", "memory")
    feats = []
    for f in od.getFeatures():
        g = QgsFeature(lines.fields())
        g.setGeometry(QgsGeometry.fromMultiPolylineXY([[inside[f["origin_id"]], QgsPointXY(-74.0, 40.75)],
                                                       [QgsPointXY(-73.9, 40.8), inside[f["destination_id"]]]]))
        g.setAttributes([f["trips"]])
        feats.append(g)
    lines.dataProvider().addFeatures(feats)
    m = join("mobility", reg, ctx, fb, mobility=source(lines), mobility_count_field="trips").values
    np.testing.assert_array_equal(m.toarray(), data.mobility.toarray())
    assert not fb.warnings


def test_both_front_doors_give_identical_region_data(sample_data, sample_copy):
    """QGIS layers (processing_provider.layers) and files (topt_core.io, geopandas) -> the same RegionData."""
    from topt_core import io

    data, _ = sample_data
    other, _ = io.read_region_data(uri(sample_copy, "regions"), region_id="region_id",
                                   pois=uri(sample_copy, "pois"), poi_category="category",
                                   od=uri(sample_copy, "od"), od_origin="origin_id", od_destination="destination_id",
                                   od_count="trips", landuse_fields=LU_FIELDS)
    assert other.region_ids.tolist() == data.region_ids.tolist() and other.crs == data.crs
    assert other.poi_categories == data.poi_categories and other.landuse_classes == data.landuse_classes
    np.testing.assert_array_equal(other.poi_counts, data.poi_counts)
    np.testing.assert_array_equal(other.landuse, data.landuse)
    np.testing.assert_array_equal(other.mobility.toarray(), data.mobility.toarray())
    np.testing.assert_array_equal(other.adjacency, data.adjacency)
    np.testing.assert_allclose(other.centroids, data.centroids, rtol=0, atol=1e-3)
    np.testing.assert_allclose(other.areas, data.areas, rtol=1e-7)
