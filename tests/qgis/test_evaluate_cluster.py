"""topt:evaluate_embeddings and topt:cluster_regions through processing.run, plus batch runs and styles."""
import json

import numpy as np
import pytest
from qgis.core import (QgsFeature, QgsGeometry, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsVectorLayer, QgsCategorizedSymbolRenderer, QgsGraduatedSymbolRenderer,
                       QgsProcessingContext as Ctx)

from topt_test_helpers import as_layer, sha256


def table_rows(layer):
    return {f["target"]: f for f in layer.getFeatures()}


def test_evaluate_on_trained_embeddings(trained, tmp_path):
    import processing

    _, emb_path, _, _ = trained
    before = sha256(emb_path)
    res = processing.run("topt:evaluate_embeddings", {
        "INPUT": str(emb_path), "TARGET_FIELDS": ["crime_count", "checkin_count", "service_call_count"],
        "PROTOCOL": "hafusion-ny", "CLUSTER_LABEL_FIELD": "cd_label", "OUTPUT": str(tmp_path / "eval.gpkg"),
        "OUTPUT_REPORT": str(tmp_path / "eval.html")})
    rows = table_rows(as_layer(res["OUTPUT"]))
    assert set(rows) == {"crime_count", "checkin_count", "service_call_count", "cd_label"}
    for t in ("crime_count", "checkin_count", "service_call_count"):
        assert rows[t]["n"] == 180 and rows[t]["protocol"] == "hafusion-ny"
        assert np.isfinite([rows[t]["mae"], rows[t]["rmse"], rows[t]["r2"]]).all()
    assert 0 <= rows["cd_label"]["nmi"] <= 1 and np.isfinite(rows["cd_label"]["ari"])
    html = (tmp_path / "eval.html").read_text(encoding="utf-8")
    assert "<table" in html and html.count("data:image/png;base64,") == 9     # per target: map, scatter, histogram
    assert html.count("alt='residual map'") == 3
    assert sha256(emb_path) == before


@pytest.fixture(scope="module")
def gurpp_layer(qgis_app, shared_data):
    """GURPP's released Manhattan embedding as a table layer: a published reference input."""
    emb = np.load(shared_data / "gurpp" / "emb.npy")
    crime = np.load(shared_data / "hafusion" / "crime_counts.npy").reshape(-1)
    cd = json.loads((shared_data / "mvure" / "mh_cd.json").read_text())
    spec = "None?" + "&".join([f"field=e{k}:double" for k in range(emb.shape[1])] + ["field=crime:double",
                                                                                  "field=cd:integer"])
    lyr = QgsVectorLayer(spec, "gurpp", "memory")
    feats = []
    for i in range(emb.shape[0]):
        f = QgsFeature(lyr.fields())
        f.setAttributes([float(x) for x in emb[i]] + [float(crime[i]), int(cd[str(i)])])
        feats.append(f)
    lyr.dataProvider().addFeatures(feats)
    return lyr, [f"e{k}" for k in range(emb.shape[1])]


def test_evaluate_reproduces_the_published_reference_figures(topt_provider, gurpp_layer):
    """shared/data/README.md §6: GURPP emb.npy, 5-fold Ridge crime MAE 69.232 / RMSE 93.270 / R² 0.602;
    KMeans(12, rs=3, n_init=10) NMI 0.484, ARI 0.210."""
    import processing

    lyr, names = gurpp_layer
    res = processing.run("topt:evaluate_embeddings", {
        "INPUT": lyr, "EMBEDDING_FIELDS": names, "TARGET_FIELDS": ["crime"], "PROTOCOL": "mvure-5fold",
        "CLUSTER_LABEL_FIELD": "cd", "OUTPUT": "TEMPORARY_OUTPUT"})
    rows = table_rows(as_layer(res["OUTPUT"]))
    assert rows["crime"]["mae"] == pytest.approx(69.232, abs=1e-3)
    assert rows["crime"]["rmse"] == pytest.approx(93.270, abs=1e-3)
    assert rows["crime"]["r2"] == pytest.approx(0.602, abs=1e-3)
    assert rows["cd"]["nmi"] == pytest.approx(0.484, abs=1e-3)
    assert rows["cd"]["ari"] == pytest.approx(0.210, abs=1e-3)


def test_evaluate_refuses_nothing_to_do_and_overlap(topt_provider, gurpp_layer):
    import processing

    lyr, names = gurpp_layer
    with pytest.raises(QgsProcessingException, match="Nothing to evaluate"):
        processing.run("topt:evaluate_embeddings", {"INPUT": lyr, "EMBEDDING_FIELDS": names,
                                                    "OUTPUT": "TEMPORARY_OUTPUT"})
    with pytest.raises(QgsProcessingException, match="both embedding and target"):
        processing.run("topt:evaluate_embeddings", {"INPUT": lyr, "EMBEDDING_FIELDS": names,
                                                    "TARGET_FIELDS": ["e3"], "OUTPUT": "TEMPORARY_OUTPUT"})


def test_cluster_on_file_and_memory_layers(trained, tmp_path, gurpp_layer):
    import processing

    _, emb_path, _, _ = trained
    res = processing.run("topt:cluster_regions", {"INPUT": str(emb_path), "K": 12,
                                                  "OUTPUT": str(tmp_path / "clusters.gpkg")})
    out = as_layer(res["OUTPUT"])
    labels = [f["cluster"] for f in out.getFeatures()]
    assert out.featureCount() == 180 and set(labels) == set(range(12)) and res["CLUSTERS"] == 12
    assert out.wkbType() == QgsVectorLayer(str(emb_path), "e", "ogr").wkbType()
    assert res["INERTIA"] > 0
    # memory table input, fixed embedding fields
    lyr, names = gurpp_layer
    res = processing.run("topt:cluster_regions", {"INPUT": lyr, "EMBEDDING_FIELDS": names, "K": 3, "SEED": 0,
                                                  "OUTPUT": "TEMPORARY_OUTPUT"})
    assert sorted({f["cluster"] for f in as_layer(res["OUTPUT"]).getFeatures()}) == [0, 1, 2]
    with pytest.raises(QgsProcessingException, match="K=500"):
        processing.run("topt:cluster_regions", {"INPUT": lyr, "EMBEDDING_FIELDS": names, "K": 500,
                                                "OUTPUT": "TEMPORARY_OUTPUT"})


def test_batch_runs_over_parameter_sets(trained, tmp_path):
    """What the batch dialog does: the same algorithm once per row of parameters."""
    import processing

    _, emb_path, _, _ = trained
    rows = [{"INPUT": str(emb_path), "K": k, "SEED": s, "OUTPUT": str(tmp_path / f"k{k}.gpkg")}
            for k, s in ((4, 1), (8, 2))]
    outs = []
    for params in rows:
        ctx, fb = QgsProcessingContext(), QgsProcessingFeedback()
        outs.append(processing.run("topt:cluster_regions", params, context=ctx, feedback=fb))
    for params, res in zip(rows, outs):
        got = {f["cluster"] for f in as_layer(res["OUTPUT"]).getFeatures()}
        assert got == set(range(params["K"]))
    # the same through the algorithm API used by the batch panel
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().createAlgorithmById("topt:evaluate_embeddings")
    for protocol in ("hafusion-ny", "mvure-5fold"):
        ctx, fb = QgsProcessingContext(), QgsProcessingFeedback()
        params = {"INPUT": str(emb_path), "TARGET_FIELDS": ["crime_count"], "PROTOCOL": protocol,
                  "OUTPUT": str(tmp_path / f"{protocol}.gpkg")}
        ok, why = alg.checkParameterValues(params, ctx)
        assert ok, why
        result, ok = alg.run(params, ctx, fb)
        assert ok and next(as_layer(result["OUTPUT"]).getFeatures())["protocol"] == protocol


def test_styles_for_loaded_outputs(trained, qgis_app):
    from topt.processing_provider.adapters import styles as outputs

    _, emb_path, _, _ = trained
    layer = QgsVectorLayer(str(emb_path), "emb", "ogr")
    assert outputs.apply_style(layer, "crime_count", "graduated")
    assert isinstance(layer.renderer(), QgsGraduatedSymbolRenderer) and len(layer.renderer().ranges()) == 5
    assert outputs.apply_style(layer, "cd_label", "categorized")
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    assert len(layer.renderer().categories()) == len(layer.uniqueValues(layer.fields().indexFromName("cd_label")))
    assert not outputs.apply_style(layer, "missing", "graduated")
    # the post-processor is attached only when the result will be loaded (desktop), and styles the layer
    ctx = Ctx()
    outputs.style_on_load(ctx, "some_id", "crime_count", "graduated")          # not loading: nothing attached
    assert not ctx.willLoadLayerOnCompletion("some_id") and not ctx.layersToLoadOnCompletion()
    ctx.addLayerToLoadOnCompletion(layer.id(), Ctx.LayerDetails("emb", ctx.project()))
    outputs.style_on_load(ctx, layer.id(), "crime_count", "graduated")
    pp = ctx.layerToLoadOnCompletionDetails(layer.id()).postProcessor()
    assert pp is not None
    layer2 = QgsVectorLayer(str(emb_path), "emb2", "ogr")
    pp.postProcessLayer(layer2, ctx, QgsProcessingFeedback())
    assert isinstance(layer2.renderer(), QgsGraduatedSymbolRenderer)
