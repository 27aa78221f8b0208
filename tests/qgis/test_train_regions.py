"""topt:train_regions through processing.run: files, memory layers, parity with the engine, cancel, errors."""
import json

import numpy as np
import pytest
from qgis.core import (QgsFeature, QgsFeatureRequest, QgsGeometry, QgsProcessingException, QgsProcessingFeedback,
                       QgsVectorLayer)

from topt_test_helpers import FAST_SREL, LU_FIELDS, as_layer, sample_params, sha256, uri


def emb_matrix(layer, dim):
    names = [f"emb_{k:03d}" for k in range(dim)]
    idx = [layer.fields().indexFromName(n) for n in names]
    assert -1 not in idx
    feats = sorted(layer.getFeatures(), key=lambda f: int(f["region_id"]))
    return np.array([[f.attributes()[i] for i in idx] for f in feats], dtype=float)


def test_train_on_sample_files(trained, sample_copy):
    res, emb_path, model_dir, before = trained
    layer = as_layer(res["OUTPUT"])
    assert layer.featureCount() == 180
    names = layer.fields().names()
    for kept in ("region_id", "crime_count", "cd_label", "lu_10"):
        assert kept in names
    emb = emb_matrix(layer, 16)
    assert np.isfinite(emb).all() and emb.std(0).min() > 0
    assert "emb_016" not in names
    assert res["REGIONS"] == 180 and res["EPOCHS_RUN"] == 5 and res["DEVICE"] == "cpu"
    assert res["TRAIN_SECONDS"] > 0 and res["EMBEDDING_DIM"] == 16
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors",
                                                           "region_data.safetensors"]
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["config"]["embed_dim"] == 16 and cfg["config"]["seed"] == 7
    assert sha256(sample_copy) == before, "the input GeoPackage was modified"
    assert not list(model_dir.parent.glob(".model.*")), "temporary model folder left behind"


def test_embeddings_equal_the_engine_on_the_benchmark(trained, shared_data):
    """Same seed and settings: the layers front door gives the engine's embeddings on the benchmark arrays."""
    from topt_core.benchmark import load_manhattan
    from topt_core.config import SrelConfig
    from topt_core.srel import train_srel

    res, *_ = trained
    bench = load_manhattan(shared_data)
    keep = bench.poi_counts.sum(0) > 0          # a point layer cannot hold the one empty POI category
    bench.poi_counts, bench.poi_categories = bench.poi_counts[:, keep], [f"cat_{j:02d}" for j in np.flatnonzero(keep)]
    cfg = SrelConfig(embed_dim=16, hidden_dim=16, layers=1, heads=2, epochs=5, device="cpu", seed=7)
    ref = train_srel(bench, cfg).embeddings
    got = emb_matrix(as_layer(res["OUTPUT"]), 16)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def materialize(gpkg, name):
    layer = QgsVectorLayer(uri(gpkg, name), name, "ogr")
    assert layer.isValid()
    return layer.materialize(QgsFeatureRequest())


def od_lines(regions, od, limit=3000):
    """OD table -> memory lines from a point inside the origin to a point inside the destination."""
    pts = {f["region_id"]: f.geometry().pointOnSurface().asPoint() for f in regions.getFeatures()}
    lines = QgsVectorLayer("LineString?crs=EPSG:4326&field=trips:double", "od_lines", "memory")
    feats = []
    for k, f in enumerate(od.getFeatures()):
        if k >= limit:
            break
        g = QgsFeature(lines.fields())
        g.setGeometry(QgsGeometry.fromPolylineXY([pts[f["origin_id"]], pts[f["destination_id"]]]))
        g.setAttributes([float(f["trips"])])
        feats.append(g)
    lines.dataProvider().addFeatures(feats)
    return lines


def test_train_on_memory_layers_with_od_lines_and_landuse_polygons(topt_provider, sample_copy):
    import processing

    regions = materialize(sample_copy, "regions")
    pois = materialize(sample_copy, "pois")
    lines = od_lines(regions, materialize(sample_copy, "od"))
    res = processing.run("topt:train_regions", {
        "REGIONS": regions, "REGION_ID_FIELD": "region_id", "POIS": pois, "POI_CATEGORY_FIELD": "category",
        "MOBILITY": lines, "MOBILITY_COUNT_FIELD": "trips", "LANDUSE": regions, "LANDUSE_CLASS_FIELD": "cd_label",
        **FAST_SREL, "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_MODEL": "TEMPORARY_OUTPUT"})
    out = as_layer(res["OUTPUT"])
    assert out.featureCount() == 180 and out.crs().authid() == "EPSG:4326"
    assert np.isfinite(emb_matrix(out, 16)).all()
    assert regions.featureCount() == 180 and "emb_000" not in regions.fields().names()   # input untouched


class CancelAt(QgsProcessingFeedback):
    """Cancels once progress passes ``at`` percent (training runs from 15 % to 95 %)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def setProgress(self, p):  # noqa: N802
        super().setProgress(p)
        if p >= self.at and not self.isCanceled():
            self.cancel()


def test_cancel_mid_training_writes_nothing(topt_provider, sample_copy, tmp_path):
    import processing

    out, model = tmp_path / "emb.gpkg", tmp_path / "model"
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run("topt:train_regions", {**sample_params(sample_copy), **FAST_SREL, "EPOCHS": 200,
                                              "OUTPUT": str(out), "OUTPUT_MODEL": str(model)},
                       feedback=CancelAt(16.0))
    assert not out.exists()
    assert not model.exists() or not any(model.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("change,match", [
    ({"POI_CATEGORY_FIELD": ""}, "POI_CATEGORY_FIELD"),
    ({"MOBILITY_DESTINATION_FIELD": ""}, "MOBILITY_ORIGIN_FIELD and MOBILITY_DESTINATION_FIELD"),
    ({"DISTANCE_CRS": "EPSG:4326"}, "geographic"),
    ({"REGION_ID_FIELD": "cd_label"}, "must be unique"),
    ({"POIS": None, "MOBILITY": None, "LANDUSE_FIELDS": []}, "No usable view"),
    ({"VIEW_WEIGHTS": "poi:2"}, "'poi:2' is not of the form name=number"),
    ({"VIEW_WEIGHTS": "pois=2"}, "'pois', which is not a view"),
])
def test_bad_inputs_give_clear_messages(topt_provider, sample_copy, tmp_path, change, match):
    import processing

    params = {**sample_params(sample_copy), **FAST_SREL, "OUTPUT": str(tmp_path / "o.gpkg"),
              "OUTPUT_MODEL": str(tmp_path / "m")}
    params.update(change)
    with pytest.raises(QgsProcessingException, match=match):
        processing.run("topt:train_regions", params)
    assert not (tmp_path / "o.gpkg").exists()


def test_view_weights_reach_the_model(topt_provider, sample_copy, tmp_path):
    """VIEW_WEIGHTS (the command line's --view-weights) is stored with the model, as the engine's config."""
    import processing

    processing.run("topt:train_regions", {**sample_params(sample_copy), **FAST_SREL, "VIEW_WEIGHTS": "mobility=0.5; poi=2",
                                          "OUTPUT": str(tmp_path / "o.gpkg"), "OUTPUT_MODEL": str(tmp_path / "m")})
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert [tuple(p) for p in cfg["view_weights"]] == [("mobility", 0.5), ("poi", 2.0)]


def test_sparse_recipe_reaches_the_model(topt_provider, sample_copy, tmp_path):
    """SPARSE_RECIPE=on trains the sample (dense POIs, so auto leaves it plain) with the recipe's objectives."""
    import processing

    runs = {}
    for value in ("auto", "on"):
        out = tmp_path / value
        processing.run("topt:train_regions", {**sample_params(sample_copy), **FAST_SREL, "SPARSE_RECIPE": value,
                                              "OUTPUT": str(out / "o.gpkg"), "OUTPUT_MODEL": str(out / "m")})
        runs[value] = json.loads((out / "m" / "config.json").read_text())["config"]
    assert runs["auto"]["sparse_recipe"] == "off" and runs["auto"]["mask_weight"] == 0
    assert runs["on"]["sparse_recipe"] == "on" and runs["on"]["view_fusion"] == "concat"
    assert runs["on"]["mask_weight"] == 5.0 and runs["on"]["contrast_weight"] == 1.0
