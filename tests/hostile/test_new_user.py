"""What new users hit (issue 13): silent wrong answers, unclear messages, defaults and the desktop.

Each test runs the plugin the way the finding describes and fails on the code before the fix.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import TINY_PREDICT, TINY_TRAIN, assert_refusal
from .helpers import LogFeedback, od_table, points_layer, pois_in_cells, regions_layer, save_gpkg

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample" / "manhattan.gpkg"
LU = [f"lu_{i:02d}" for i in range(11)]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PROJ_DATA", None)                      # as a user's shell: the CLI must find PROJ itself
    return subprocess.run([sys.executable, "-m", "topt_core", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory):
    """A small model trained on the whole sample with REGION_ID_FIELD=region_id (engine call, fast)."""
    from tests.core.srel_fixtures import FAST
    from topt_core import io
    from topt_core.srel import save_model, train_srel

    folder = tmp_path_factory.mktemp("sample-model")
    data, _ = io.read_region_data(f"{SAMPLE}:regions", region_id="region_id", pois=f"{SAMPLE}:pois",
                                  poi_category="category", landuse_fields=LU)
    save_model(train_srel(data, FAST), folder / "model", data=data)
    return folder / "model"


@pytest.fixture(scope="module")
def subset_gpkg(tmp_path_factory):
    """The first 100 sample regions in a new GeoPackage: fid 1..100, region_id 0..99 (both 'valid' ids)."""
    import geopandas as gpd

    out = tmp_path_factory.mktemp("subset") / "subset.gpkg"
    gdf = gpd.read_file(SAMPLE, layer="regions").iloc[:100]
    gdf.to_file(out, layer="regions", driver="GPKG")
    return out


def _strip_id_field(model, tmp_path):
    """A copy of the model folder as written before the id field was recorded."""
    import shutil

    old = tmp_path / "old-model"
    shutil.copytree(model, old)
    manifest = json.loads((old / "config.json").read_text())
    manifest["region_data"].pop("id_field")
    (old / "config.json").write_text(json.dumps(manifest))
    return old


# -- 1. predict matched regions by the GeoPackage fid -----------------------------------------------

def test_predict_matches_regions_by_the_field_the_model_was_trained_with(run_alg, sample_model, subset_gpkg,
                                                                          tmp_path):
    base = {"INPUT": f"{subset_gpkg}|layername=regions", "TARGET_FIELD": "crime_count", "TASK": "crime",
            "MODEL": str(sample_model), **TINY_PREDICT}
    auto, msg, fb = run_alg("topt:predict_regions", {**base, "OUTPUT": str(tmp_path / "auto.gpkg")})
    assert msg is None, msg
    assert any("by 'region_id', the id field the model was trained with" in i for i in fb.infos), fb.infos
    explicit, msg, _ = run_alg("topt:predict_regions", {**base, "REGION_ID_FIELD": "region_id",
                                                        "OUTPUT": str(tmp_path / "explicit.gpkg")})
    assert msg is None and auto["R2"] == explicit["R2"] and auto["MAE"] == explicit["MAE"]


def test_predict_refuses_an_ambiguous_match_instead_of_taking_fids(run_alg, sample_model, subset_gpkg, tmp_path):
    old = _strip_id_field(sample_model, tmp_path)       # a model folder that does not record its id field
    res, msg, _ = run_alg("topt:predict_regions", {
        "INPUT": f"{subset_gpkg}|layername=regions", "TARGET_FIELD": "crime_count", "MODEL": str(old),
        **TINY_PREDICT, "OUTPUT": str(tmp_path / "p.gpkg")})
    assert_refusal(msg, ["'region_id'", "'fid'", "pick different regions", "REGION_ID_FIELD"])
    assert not (tmp_path / "p.gpkg").exists()


def test_cli_predict_matches_regions_by_the_same_rule(sample_model, subset_gpkg, tmp_path):
    args = ["predict", "--input", f"{subset_gpkg}:regions", "--target", "crime_count", "--task", "crime",
            "--text-encoder", TINY_PREDICT["TEXT_ENCODER"], "--device", "cpu", "--folds", "2"]
    p = _cli(*args, "--model-dir", sample_model, "--output", tmp_path / "a.gpkg")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "by 'region_id', the id field the model was trained with" in p.stderr
    p = _cli(*args, "--model-dir", _strip_id_field(sample_model, tmp_path), "--output", tmp_path / "b.gpkg")
    assert p.returncode == 2 and "pick different regions" in p.stderr and "'region_id'" in p.stderr, p.stderr[-2000:]


# -- 2. a heavily skewed target -----------------------------------------------------------------------

def test_skewed_target_warns_and_auto_uses_log1p():
    from tests.core.srel_fixtures import tiny_data
    from topt_core.config import PromptConfig
    from topt_core.prompt import run_prompt4re

    rng = np.random.default_rng(0)
    data = tiny_data(n=60).validate()
    emb = rng.normal(size=(60, 6))
    y = np.exp(0.3 * emb[:, 0]) * 10 + rng.random(60)
    y[7] = 1e6                                             # one region at 1e6, the rest near 10
    cfg = PromptConfig(text_encoder=TINY_PREDICT["TEXT_ENCODER"], epochs=0, folds=5, device="cpu")
    res = run_prompt4re(emb, data, y, "y", cfg)
    assert any("heavily skewed" in w and "1e+06" in w for w in res.warnings), res.warnings
    assert np.mean([c["log1p"] for c in res.chosen]) > 0.5            # the stack leans on the log scale
    normal = np.arange(60) != 7
    # without the transform 98 of 180 regions came out as exactly 0 and 80 above 1000
    assert (res.predictions[normal] == 0).sum() == 0 and (res.predictions[normal] < 100).all()
    none = run_prompt4re(emb, data, y, "y", cfg.replace(target_transform="none"))
    assert (none.predictions[normal] > 100).any() or (none.predictions[normal] == 0).any()


# -- 3. a CRS in US feet ------------------------------------------------------------------------------

def test_feet_crs_distances_and_areas_come_out_in_metres(run_alg, tmp_path):
    from topt_core.checkpoint import load_region_data

    areas = {}
    for crs in ("EPSG:2263", "EPSG:32618"):             # NY State Plane (US survey feet) vs UTM 18N (metres)
        out = tmp_path / crs.replace(":", "_")
        res, msg, fb = run_alg("topt:train_regions", {
            "REGIONS": f"{SAMPLE}|layername=regions", "REGION_ID_FIELD": "region_id", "LANDUSE_FIELDS": LU,
            "DISTANCE_CRS": crs, **TINY_TRAIN, "OUTPUT": str(out / "e.gpkg"), "OUTPUT_MODEL": str(out / "m")})
        assert msg is None, msg
        areas[crs] = load_region_data(out / "m").areas
        if crs == "EPSG:2263":
            assert any("converted to metres" in i for i in fb.infos), fb.infos
    ratio = areas["EPSG:2263"] / areas["EPSG:32618"]
    assert np.allclose(ratio, 1.0, atol=0.01), ratio[:5]         # not 10.76 (ft² taken as m²)


def test_cli_feet_crs_is_converted_too(tmp_path):
    from topt_core import io

    a, _ = io.read_region_data(f"{SAMPLE}:regions", region_id="region_id", landuse_fields=LU, distance_crs="EPSG:2263")
    b, _ = io.read_region_data(f"{SAMPLE}:regions", region_id="region_id", landuse_fields=LU,
                               distance_crs="EPSG:32618")
    assert np.allclose(a.areas / b.areas, 1.0, atol=0.01)


# -- 4. Shapefile outputs -----------------------------------------------------------------------------

def test_shapefile_prediction_fields_fit_the_format_and_are_reported(run_alg, sample_model, tmp_path):
    from qgis.core import QgsVectorLayer

    res, msg, _ = run_alg("topt:predict_regions", {
        "INPUT": f"{SAMPLE}|layername=regions", "TARGET_FIELD": "service_call_count", "TASK": "service",
        "MODEL": str(sample_model), "REGION_ID_FIELD": "region_id", **TINY_PREDICT,
        "OUTPUT": str(tmp_path / "pred.shp")})
    assert msg is None, msg
    names = QgsVectorLayer(str(tmp_path / "pred.shp"), "p", "ogr").fields().names()
    assert res["PRED_FIELD"] == "pred_servi" and res["OOF_FIELD"] == "oof_servic"
    assert {"pred_servi", "oof_servic", "is_labelle"} <= set(names), names


# -- 5. folds and protocols ---------------------------------------------------------------------------

def test_protocol_sets_its_folds_and_drops_zero_checkins(run_alg, sample_model, tmp_path):
    base = {"INPUT": f"{SAMPLE}|layername=regions", "TARGET_FIELD": "checkin_count", "TASK": "checkin",
            "MODEL": str(sample_model), "REGION_ID_FIELD": "region_id",
            **{k: v for k, v in TINY_PREDICT.items() if k != "FOLDS"}}
    res, msg, fb = run_alg("topt:predict_regions", {**base, "PROTOCOL": "hafusion-chi",
                                                    "OUTPUT": str(tmp_path / "chi.gpkg")})
    assert msg is None, msg
    assert any("Outer folds: hafusion-chi, KFold(25), shuffled (random_state 2024)" in i for i in fb.infos), fb.infos
    assert any("1 region(s) with 0 check-ins are left out" in i for i in fb.infos), fb.infos
    res, msg, fb = run_alg("topt:predict_regions", {**base, "OUTPUT": str(tmp_path / "default.gpkg")})
    assert any("Outer folds: random, KFold(10), shuffled" in i for i in fb.infos), fb.infos


def test_default_folds_are_shuffled_for_users_and_benchmark_folds_are_not():
    from topt_core.config import PromptConfig
    from topt_core.evaluate import make_folds

    cfg = PromptConfig()
    assert cfg.protocol == "random" and cfg.outer_folds == 10
    test_of_first = [te for _, te in make_folds(100, cfg.protocol, cfg.folds, cfg.seed)][0]
    assert not np.array_equal(test_of_first, np.arange(10))          # not the first 10 regions in layer order
    assert np.array_equal(make_folds(100, "hafusion-ny")[0][1], np.arange(10))


# -- 6. a GeoJSON with polygons and other geometries --------------------------------------------------

def test_mixed_geometry_layer_uses_the_polygon_parts_and_says_what_it_holds(run_alg, tmp_path):
    from .conftest import STEP, grid_cells, square

    cells = grid_cells(12, 4)
    feats = [{"type": "Feature", "properties": {"id": k}, "geometry": json.loads(_wkt_json(square(x, y, STEP)))}
             for k, (x, y) in enumerate(cells[:10])]
    x, y = cells[10]
    feats.append({"type": "Feature", "properties": {"id": 10}, "geometry": {"type": "GeometryCollection", "geometries": [
        json.loads(_wkt_json(square(x, y, STEP))), {"type": "Point", "coordinates": [x, y]}]}})
    feats.append({"type": "Feature", "properties": {"id": 11}, "geometry": {"type": "Point", "coordinates": [0, 0]}})
    feats.append({"type": "Feature", "properties": {"id": 12},
                  "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}})
    path = tmp_path / "mixed.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    res, msg, fb = run_alg("topt:train_regions", {
        "REGIONS": str(path), "REGION_ID_FIELD": "id", "POIS": points_layer(*pois_in_cells(12)),
        "POI_CATEGORY_FIELD": "category", **TINY_TRAIN, "OUTPUT": str(tmp_path / "e.gpkg"),
        "OUTPUT_MODEL": str(tmp_path / "m")})
    assert msg is None, msg
    assert res["REGIONS"] == 11, fb.warnings
    assert any("polygon parts of 11 feature(s)" in w and "2 feature(s) without a polygon" in w for w in fb.warnings)


def _wkt_json(wkt):
    from qgis.core import QgsGeometry

    return QgsGeometry.fromWkt(wkt).asJson()


# -- 7. enum values as numbers ------------------------------------------------------------------------

def test_enum_numbers_mean_the_listed_option(run_alg, sample_model, tmp_path):
    res, msg, fb = run_alg("topt:predict_regions", {
        "INPUT": f"{SAMPLE}|layername=regions", "TARGET_FIELD": "crime_count", "TASK": 0, "PROTOCOL": "2",
        "MODEL": str(sample_model), "REGION_ID_FIELD": "region_id", **TINY_PREDICT,
        "OUTPUT": str(tmp_path / "p.gpkg")})
    assert msg is None, msg
    assert any("task crime" in i for i in fb.infos) and any("Outer folds: hafusion-ny" in i for i in fb.infos)
    res, msg, _ = run_alg("topt:predict_regions", {
        "INPUT": f"{SAMPLE}|layername=regions", "TARGET_FIELD": "crime_count", "TASK": 9,
        "MODEL": str(sample_model), **TINY_PREDICT, "OUTPUT": str(tmp_path / "q.gpkg")})
    assert msg is not None and "TASK" in msg


# -- 8. degenerate runs that said nothing -------------------------------------------------------------

def test_single_poi_category_warns(run_alg, tmp_path):
    xys, _ = pois_in_cells(12)
    res, msg, fb = run_alg("topt:train_regions", {
        "REGIONS": regions_layer(12), "POIS": points_layer(xys, ["food"] * len(xys)), "POI_CATEGORY_FIELD": "category",
        **TINY_TRAIN, "OUTPUT": str(tmp_path / "e.gpkg"), "OUTPUT_MODEL": str(tmp_path / "m")})
    assert msg is None, msg
    assert any("one column ('food')" in w and "teaches the model nothing" in w for w in fb.warnings), fb.warnings


def test_identical_polygons_with_different_ids_are_named(run_alg, tmp_path):
    from .conftest import STEP, grid_cells, square

    wkts = [square(x, y, STEP) for x, y in grid_cells(12, 4)]
    wkts[5] = wkts[4]
    res, msg, fb = run_alg("topt:train_regions", {
        "REGIONS": regions_layer(12, wkts=wkts), "REGION_ID_FIELD": "id", "POIS": points_layer(*pois_in_cells(12)),
        "POI_CATEGORY_FIELD": "category", **TINY_TRAIN, "OUTPUT": str(tmp_path / "e.gpkg"),
        "OUTPUT_MODEL": str(tmp_path / "m")})
    assert msg is None, msg
    assert any("identical polygons ('5' = '6')" in w for w in fb.warnings), fb.warnings


def test_few_labels_come_with_a_caution(run_alg, sample_model, tmp_path):
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{SAMPLE}|layername=regions", "r", "ogr")
    mem = layer.materialize(__import__("qgis.core", fromlist=["QgsFeatureRequest"]).QgsFeatureRequest())
    idx = mem.fields().indexFromName("crime_count")
    mem.startEditing()
    for f in mem.getFeatures():
        if f.id() > 12:
            mem.changeAttributeValue(f.id(), idx, None)
    mem.commitChanges()
    res, msg, fb = run_alg("topt:predict_regions", {
        "INPUT": mem, "TARGET_FIELD": "crime_count", "MODEL": str(sample_model), "REGION_ID_FIELD": "region_id",
        **{k: v for k, v in TINY_PREDICT.items() if k != "FOLDS"}, "OUTPUT": str(tmp_path / "p.gpkg")})
    assert msg is None and res["LABELLED"] == 12
    assert any("Only 12 labelled regions for 10 folds" in w and "1-2 regions" in w for w in fb.warnings), fb.warnings


def test_zero_padded_od_ids_get_a_hint(run_alg, tmp_path):
    rows = [(f"{o:03d}", f"{d:03d}", 5.0) for o, d in [(1, 2), (2, 3), (3, 1), (4, 5)]]
    res, msg, fb = run_alg("topt:train_regions", {
        "REGIONS": regions_layer(12), "REGION_ID_FIELD": "id", "MOBILITY": od_table(rows, "string", "string"),
        "MOBILITY_ORIGIN_FIELD": "o", "MOBILITY_DESTINATION_FIELD": "d", "MOBILITY_COUNT_FIELD": "trips",
        **TINY_TRAIN, "OUTPUT": str(tmp_path / "e.gpkg"), "OUTPUT_MODEL": str(tmp_path / "m")})
    assert_refusal(msg, ["None of the 4 OD records", "zero-padded", "'001' vs '1'"])


# -- 9. CSV outputs -----------------------------------------------------------------------------------

def test_csv_output_reads_back_as_numbers_and_predict_can_use_it(run_alg, sample_model, tmp_path):
    from qgis.core import QgsVectorLayer

    res, msg, fb = run_alg("topt:train_regions", {
        "REGIONS": f"{SAMPLE}|layername=regions", "REGION_ID_FIELD": "region_id", "LANDUSE_FIELDS": LU,
        **TINY_TRAIN, "OUTPUT": str(tmp_path / "emb.csv"), "OUTPUT_MODEL": str(tmp_path / "m")})
    assert msg is None, msg
    assert any("keeps no polygons" in w for w in fb.warnings)
    csv = QgsVectorLayer(str(tmp_path / "emb.csv"), "c", "ogr")
    types = {f.name(): f.typeName() for f in csv.fields()}
    assert types["emb_000"] == "Real" and types["crime_count"] in ("Real", "Integer", "Integer64"), types
    res, msg, _ = run_alg("topt:predict_regions", {
        "INPUT": str(tmp_path / "emb.csv"), "TARGET_FIELD": "crime_count", "MODEL": str(tmp_path / "m"),
        **TINY_PREDICT, "OUTPUT": str(tmp_path / "p.gpkg")})
    assert msg is None and res["LABELLED"] == 180, msg


# -- 10. noise and declarations -----------------------------------------------------------------------

def test_cli_prints_no_proj_warning(tmp_path):
    p = _cli("evaluate", "--input", f"{SAMPLE}:regions", "--targets", "crime_count", "--prefix", "lu_")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "PROJ data directory" not in p.stderr


def test_qgis_process_wrapper_prints_no_setapi_warning():
    out = subprocess.run([str(ROOT / "scripts" / "qgis_process.sh"), "list"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "topt:train_regions" in out.stdout
    assert "setapi" not in out.stdout + out.stderr


def test_model_parameter_is_a_folder(topt_provider):
    from qgis.core import QgsApplication, QgsProcessingParameterFile

    p = QgsApplication.processingRegistry().algorithmById("topt:predict_regions").parameterDefinition("MODEL")
    assert p.behavior() == QgsProcessingParameterFile.Folder and "folder" in p.description().lower()


# -- 11-17. the desktop ------------------------------------------------------------------------------

def test_temporary_model_folder_is_put_next_to_the_output(run_alg, tmp_path):
    import processing  # noqa: F401

    params = {"REGIONS": regions_layer(12), "POIS": points_layer(*pois_in_cells(12)),
              "POI_CATEGORY_FIELD": "category", **TINY_TRAIN, "OUTPUT": str(tmp_path / "emb.gpkg"),
              "OUTPUT_MODEL": "TEMPORARY_OUTPUT"}                # the dialog's default
    res, msg, fb = run_alg("topt:train_regions", params)
    assert msg is None, msg
    assert res["OUTPUT_MODEL"] == str(tmp_path / "emb_model") and (tmp_path / "emb_model" / "config.json").exists()
    res, msg, fb = run_alg("topt:train_regions", {**params, "OUTPUT": "TEMPORARY_OUTPUT"})
    assert any("is temporary: QGIS deletes it when it closes" in w for w in fb.warnings), fb.warnings


def test_predictions_reopen_styled_with_rounded_legend(run_alg, sample_model, tmp_path):
    from qgis.core import QgsGraduatedSymbolRenderer, QgsVectorLayer

    res, msg, _ = run_alg("topt:predict_regions", {
        "INPUT": f"{SAMPLE}|layername=regions", "TARGET_FIELD": "crime_count", "MODEL": str(sample_model),
        "REGION_ID_FIELD": "region_id", **TINY_PREDICT, "OUTPUT": str(tmp_path / "p.gpkg")})
    assert msg is None, msg
    again = QgsVectorLayer(str(tmp_path / "p.gpkg"), "reopened", "ogr")      # loads the default style
    r = again.renderer()
    assert isinstance(r, QgsGraduatedSymbolRenderer) and r.classAttribute() == res["PRED_FIELD"]
    labels = [rg.label() for rg in r.ranges()]
    assert labels and all("." not in lab for lab in labels), labels      # crime counts: whole numbers


def test_help_panels_use_labels_briefly(topt_provider):
    from qgis.core import QgsApplication

    for name in ("train_regions", "predict_regions", "evaluate_embeddings", "cluster_regions"):
        alg = QgsApplication.processingRegistry().algorithmById(f"topt:{name}")
        text = alg.shortHelpString()
        assert len(text) < 6000 and "topt_core" not in text and "config." not in text
        for p in alg.parameterDefinitions():
            assert f"<b>{p.description()}</b>" in text.replace("&#x27;", "'"), (name, p.name())
            assert f"<b>{p.name()}</b>" not in text or p.name() == p.description()


def test_help_texts_cover_every_parameter_and_nothing_else(topt_provider):
    from qgis.core import QgsApplication

    from topt.processing_provider.help_texts import HELP, parameter_help

    for name in HELP:
        alg = QgsApplication.processingRegistry().algorithmById(f"topt:{name}")
        assert set(parameter_help(name)[1]) == {p.name() for p in alg.parameterDefinitions()}, name


def test_names_read_in_workflow_order_and_links_are_real(topt_provider):
    from qgis.core import QgsApplication

    algs = [a for a in QgsApplication.processingRegistry().algorithms() if a.provider().id() == "topt"]
    names = sorted(a.displayName() for a in algs)
    assert names[0].startswith("1. Train region embeddings") and names[1].startswith("2. Predict")
    for a in algs:
        assert a.helpUrl().startswith("file://") and os.path.exists(a.helpUrl()[len("file://"):])
    assert "example.org" not in (ROOT / "metadata.txt").read_text()


def test_long_training_reports_epoch_and_time_left():
    from tests.core.srel_fixtures import FAST, CountingReporter, tiny_data
    from topt_core.srel import train_srel

    rep = CountingReporter()
    train_srel(tiny_data(), FAST.replace(restarts=2, epochs=3), rep)
    assert any(t.startswith("SREL restart 1/2: epoch 1/3,") and " left" in t for t in rep.texts), rep.texts
