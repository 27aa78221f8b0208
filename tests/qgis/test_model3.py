"""The example graphical-modeler model: train_regions -> predict_regions, run through Processing."""
import numpy as np
from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingModelAlgorithm

from topt_test_helpers import LU_FIELDS, ROOT, as_layer, sha256, uri
from tests.tiny_encoder import source as tiny_source

MODEL = ROOT / "resources" / "models" / "train_and_predict.model3"


def test_model3_loads_and_runs(topt_provider, sample_copy, tmp_path):
    import processing

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL)), f"cannot read {MODEL}"
    assert [c.algorithmId() for c in sorted(model.childAlgorithms().values(), key=lambda c: c.childId())] == \
        ["topt:predict_regions", "topt:train_regions"]
    ok, why = model.canExecute()
    assert ok, why
    before = sha256(sample_copy)
    params = {"regions": uri(sample_copy, "regions"), "region_id": "region_id", "pois": uri(sample_copy, "pois"),
              "poi_category": "category", "od_table": uri(sample_copy, "od"), "od_origin": "origin_id",
              "od_destination": "destination_id", "od_trips": "trips", "landuse_fields": LU_FIELDS,
              "target": "crime_count", "task": "crime", "text_encoder": tiny_source("bert"), "embed_dim": 8,
              "train_epochs": 3, "head_epochs": 5, "folds": 3,
              "train_regions:embeddings": str(tmp_path / "emb.gpkg"),
              "train_regions:model_folder": str(tmp_path / "model"),
              "predict_regions:predictions": str(tmp_path / "pred.gpkg"),
              "predict_regions:report": str(tmp_path / "report.html")}
    ok, why = model.checkParameterValues(params, QgsProcessingContext())
    assert ok, why
    res = processing.run(model, params, context=QgsProcessingContext(), feedback=QgsProcessingFeedback())
    pred = as_layer(res["predict_regions:predictions"])
    assert pred.featureCount() == 180
    names = pred.fields().names()
    assert "emb_007" in names and "emb_008" not in names and "pred_crime_count" in names
    assert np.isfinite([f["pred_crime_count"] for f in pred.getFeatures()]).all()
    assert (tmp_path / "model" / "config.json").exists()
    assert "<table" in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert sha256(sample_copy) == before
