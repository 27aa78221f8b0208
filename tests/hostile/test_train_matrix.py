"""Hostile inputs to ``topt:train_regions`` through ``processing.run`` (issue 6).

Each case ends in a result (possibly with a warning) or a QgsProcessingException that says what was
wrong, what was expected and how to fix it; on refusal nothing is left in the output folder.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import STEP, TINY_TRAIN, assert_clear_message, assert_refusal, grid_cells, snapshot, square
from .helpers import (LogFeedback, od_table, points_layer, pois_in_cells, regions_layer)

pytestmark = pytest.mark.hostile

BOWTIE = "POLYGON((-73.99 40.74,-73.988 40.742,-73.988 40.74,-73.99 40.742,-73.99 40.74))"
TWO_PARTS = ("MULTIPOLYGON(((-73.99 40.75,-73.989 40.75,-73.989 40.751,-73.99 40.75)),"
             "((-73.98 40.75,-73.979 40.75,-73.979 40.751,-73.98 40.75)))")


def cells(n=12):
    return [square(x, y, STEP) for x, y in grid_cells(n, 4)]


def base_params(tmp_path, **kw):
    p = {"REGIONS": regions_layer(12), "POIS": points_layer(*pois_in_cells(12)), "POI_CATEGORY_FIELD": "category",
         **TINY_TRAIN, "OUTPUT": str(tmp_path / "out" / "emb.gpkg"), "OUTPUT_MODEL": str(tmp_path / "out" / "model")}
    p.update(kw)
    return {k: v for k, v in p.items() if v is not None}


def od_params(rows, **kw):
    return dict(POIS=None, POI_CATEGORY_FIELD=None, MOBILITY=od_table(rows, **kw), MOBILITY_ORIGIN_FIELD="o",
                MOBILITY_DESTINATION_FIELD="d", MOBILITY_COUNT_FIELD="trips", REGION_ID_FIELD="id")


def emb_values(path):
    from qgis.core import QgsVectorLayer

    lyr = QgsVectorLayer(str(path), "o", "ogr")
    assert lyr.isValid(), path
    names = [f.name() for f in lyr.fields() if f.name().startswith("emb_")]
    return np.asarray([[f[n] for n in names] for f in lyr.getFeatures()], dtype=float), lyr.featureCount()


# -- refusals -------------------------------------------------------------------------------------

REFUSALS = [
    # id, params(tmp_path) overrides, words that must name the problem
    ("empty_region_layer", lambda: dict(REGIONS=regions_layer(wkts=[])), "no features"),
    ("one_region", lambda: dict(REGIONS=regions_layer(1), POIS=points_layer(*pois_in_cells(1))), "1 region"),
    ("points_as_regions", lambda: dict(REGIONS=points_layer(*pois_in_cells(3))), "no polygons"),
    ("null_geometry", lambda: dict(REGIONS=regions_layer(wkts=cells()[:11] + [None])), "no geometry"),
    ("duplicate_ids", lambda: dict(REGIONS=regions_layer(12, ids=list(range(1, 12)) + [1]), REGION_ID_FIELD="id"),
     "unique"),
    ("null_ids", lambda: dict(REGIONS=regions_layer(12, ids=list(range(1, 12)) + [None]), REGION_ID_FIELD="id"),
     "empty id"),
    ("missing_id_field", lambda: dict(REGION_ID_FIELD="nope"), "'nope' is not in"),
    ("pois_all_outside", lambda: dict(POIS=points_layer([(10.0, 10.0)] * 5, ["a"] * 5)), "no usable view"),
    ("od_all_unknown_ids", lambda: od_params([(99, 98, 3.0), (97, 1, 1.0)]), "none of the 2 od records"),
    ("od_negative_counts", lambda: od_params([(1, 2, -5.0), (3, 4, 2.0)]), "negative"),
    ("od_huge_counts", lambda: od_params([(1, 2, 1e15), (3, 4, 2.0)]), "above 1e+12"),
    ("od_all_zero_view", lambda: od_params([(1, 2, 0.0), (3, 4, 0.0)]), "no usable view"),
    ("extra_field_text", lambda: dict(POIS=None, POI_CATEGORY_FIELD=None, EXTRA_FIELDS=["pop"],
                                      REGIONS=regions_layer(12, extra={"pop": ("string", ["a"] * 12)})), "string"),
    ("pois_without_category_field", lambda: dict(POI_CATEGORY_FIELD=None), "poi_category_field is empty"),
    ("distance_crs_geographic", lambda: dict(DISTANCE_CRS="EPSG:4326"), "geographic"),
    ("device_cuda_without_cuda", lambda: dict(DEVICE="cuda"), "device=cuda"),
]


@pytest.mark.parametrize("case,make,what", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_train_refuses_clearly(run_alg, tmp_path, case, make, what):
    if case == "device_cuda_without_cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    before = snapshot(tmp_path)
    res, msg, fb = run_alg("topt:train_regions", base_params(tmp_path, **make()))
    assert res is None, f"{case}: expected a refusal, got {res}"
    assert_refusal(msg, what, expected=case not in ("pois_without_category_field",))
    assert not fb.errors, f"{case}: traceback in the log: {fb.errors}"
    assert snapshot(tmp_path) == before, f"{case}: outputs left behind"


def test_empty_geometry_refused_and_bowtie_repaired_with_warning(run_alg, tmp_path):
    """Default Processing settings: an empty polygon is refused by us (not by QGIS's filter, which crashed
    the interpreter when it aborted twice: 'SystemError: unknown opcode'); a bow-tie is repaired."""
    for _ in range(2):     # twice: the crash needed a second abort in the same session
        before = snapshot(tmp_path)
        res, msg, fb = run_alg("topt:train_regions", base_params(tmp_path, REGIONS=regions_layer(
            wkts=cells()[:11] + ["POLYGON EMPTY"])))
        assert_refusal(msg, "no geometry", expected=False)
        assert snapshot(tmp_path) == before
        res, msg, fb = run_alg("topt:train_regions", base_params(tmp_path, REGIONS=regions_layer(
            wkts=cells()[:11] + [BOWTIE])))
        assert msg is None, msg
        assert any("invalid and were repaired" in w for w in fb.warnings), fb.warnings
        emb, n = emb_values(res["OUTPUT"])
        assert n == 12 and np.isfinite(emb).all()


def test_bowtie_repaired_with_warning_when_checks_are_off(topt_provider, qgis_new_project, tmp_path):
    """With 'Do not filter' (GeometryNoCheck) set by the user: same repair and warning."""
    import processing
    from qgis.core import QgsFeatureRequest, QgsProcessingContext

    ctx = QgsProcessingContext()
    ctx.setInvalidGeometryCheck(QgsFeatureRequest.GeometryNoCheck)
    fb = LogFeedback()
    res = processing.run("topt:train_regions", base_params(tmp_path, REGIONS=regions_layer(
        wkts=cells()[:11] + [BOWTIE])), context=ctx, feedback=fb)
    assert any("invalid and were repaired" in w for w in fb.warnings), fb.warnings
    emb, n = emb_values(res["OUTPUT"])
    assert n == 12 and np.isfinite(emb).all()


# -- results with a warning -----------------------------------------------------------------------

def _cats10k():
    xy = [(-73.99 + (i % 400) * 0.00002, 40.73 + (i // 400) * 0.0002) for i in range(10000)]
    return dict(POIS=points_layer(xy, [f"c{i}" for i in range(10000)]))


def _null_cats():
    xy, c = pois_in_cells(12)
    return dict(POIS=points_layer(xy, [None if i % 3 == 0 else v for i, v in enumerate(c)]))


def _numeric_cats():
    xy, c = pois_in_cells(12)
    return dict(POIS=points_layer(xy, [i % 4 for i in range(len(c))], cat_type="integer"))


RESULTS = [
    # id, overrides, warning substring (None: no warning required)
    ("multipart_region", lambda: dict(REGIONS=regions_layer(wkts=cells()[:11] + [TWO_PARTS], geom="MultiPolygon")),
     "outside every region"),
    ("null_categories", _null_cats, "empty category"),
    ("numeric_categories", _numeric_cats, None),
    ("category_10000_values", _cats10k, None),
    ("od_some_unknown_ids", lambda: od_params([(1, 2, 5.0), (3, 4, 2.0), (99, 98, 3.0)]), "not a region id (e.g. 99"),
    ("od_nan_and_null_counts", lambda: od_params([(1, 2, float("nan")), (3, 4, 2.0), (2, 5, None)]),
     "empty or non-numeric weight"),
    ("od_self_loops_only", lambda: od_params([(i, i, 3.0) for i in range(1, 13)]), "same region"),
    ("od_text_ids_12.0", lambda: od_params([("1", "2.0", 3.0), ("3", " 4 ", 2.0), ("5.0", "6", 1.0)],
                                           o_type="string", d_type="string"), None),
    ("extra_field_with_nulls", lambda: dict(POIS=None, POI_CATEGORY_FIELD=None, EXTRA_FIELDS=["pop"], REGIONS=regions_layer(
        12, extra={"pop": ("double", [None] + [float(i) for i in range(11)])})), "read as 0"),
]


@pytest.mark.parametrize("case,make,warning", RESULTS, ids=[c[0] for c in RESULTS])
def test_train_succeeds_with_warning(run_alg, tmp_path, case, make, warning):
    res, msg, fb = run_alg("topt:train_regions", base_params(tmp_path, **make()))
    assert msg is None, f"{case}: refused: {msg}"
    assert not fb.errors
    if warning:
        assert any(warning.lower() in w.lower() for w in fb.warnings), f"{case}: no warning {warning!r}: {fb.warnings}"
    emb, n = emb_values(res["OUTPUT"])
    assert n == 12 and emb.shape == (12, 8) and np.isfinite(emb).all()
    if case == "od_text_ids_12.0":
        assert not any("not a region id" in w for w in fb.warnings), fb.warnings
        assert any("3 of 3 OD records" in i for i in fb.infos), fb.infos


def test_geographic_regions_and_pois_in_another_crs_give_the_same_result(run_alg, tmp_path):
    """Regions in EPSG:4326, POIs once in 4326 and once in 3857: same counts, hence identical embeddings."""
    xy, c = pois_in_cells(12)
    merc = [(x * 20037508.342789244 / 180.0, math.log(math.tan((90.0 + y) * math.pi / 360.0)) * 6378137.0)
            for x, y in xy]
    a, _, fa = run_alg("topt:train_regions", base_params(tmp_path / "a", POIS=points_layer(xy, c)))
    b, _, fb = run_alg("topt:train_regions", base_params(tmp_path / "b", POIS=points_layer(merc, c, crs="EPSG:3857")))
    assert any("UTM zone" in i for i in fa.infos), fa.infos      # geographic input: metric CRS chosen and said
    assert any("36 of 36 points" in i for i in fb.infos), fb.infos
    ea, _ = emb_values(a["OUTPUT"])
    eb, _ = emb_values(b["OUTPUT"])
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-6)


def test_layer_without_crs_is_refused(run_alg, tmp_path):
    """A shapefile without .prj (QGIS gives memory layers EPSG:4326, files stay without CRS)."""
    from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter, QgsVectorLayer

    src = regions_layer(12, crs="EPSG:32618", step=200.0, lon0=583000.0, lat0=4508000.0)
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "ESRI Shapefile"
    shp = tmp_path / "in" / "regions.shp"
    shp.parent.mkdir()
    QgsVectorFileWriter.writeAsVectorFormatV3(src, str(shp), QgsCoordinateTransformContext(), opts)
    (shp.with_suffix(".prj")).unlink()
    lyr = QgsVectorLayer(str(shp), "r", "ogr")
    assert lyr.isValid() and not lyr.crs().isValid()
    xy = [(583000.0 + 50 + 200 * (i % 4), 4508000.0 + 50 + 200 * (i // 4)) for i in range(12)]
    pois = points_layer(xy, ["a", "b", "c"] * 4, crs="EPSG:32618")
    before = snapshot(tmp_path)
    res, msg, fb = run_alg("topt:train_regions", base_params(tmp_path, REGIONS=lyr, POIS=pois))
    assert_refusal(msg, "no CRS", expected=False)
    assert "DISTANCE_CRS" in msg
    assert snapshot(tmp_path) == before


def test_device_auto_falls_back_to_cpu_with_the_reason(run_alg, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res, msg, fb = run_alg("topt:train_regions", base_params(tmp_path, DEVICE="auto"))
    assert msg is None
    assert res["DEVICE"] == "cpu"
    assert any("auto:" in i and "CPU" in i and ("without CUDA" in i or "no CUDA" in i) for i in fb.infos), fb.infos


def test_too_many_regions_for_dense_attention_refused_before_allocating(run_alg, tmp_path, monkeypatch):
    """The memory probe says 50 MB free: refused with the figure and advice, before training starts."""
    import topt_core.srel.memory as srel_memory

    monkeypatch.setattr(srel_memory, "available_memory", lambda device="cpu": 50 * 2 ** 20)
    before = snapshot(tmp_path)
    res, msg, fb = run_alg("topt:train_regions", base_params(tmp_path))
    assert_refusal(msg, ["needs about", "GB", "available on cpu"], expected=False)
    assert "fewer regions" in msg
    assert not any("epochs in" in i for i in fb.infos), "training started before the memory check"
    assert snapshot(tmp_path) == before
