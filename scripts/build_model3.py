#!/usr/bin/env python3
"""Build resources/models/train_and_predict.model3 (a graphical-modeler model) programmatically.

    . scripts/env.sh && .venv/bin/python scripts/build_model3.py

The model chains topt:train_regions -> topt:predict_regions: regions (+ POIs, OD table,
land-use fields) -> embeddings + model folder -> predictions of a target field + report.
It needs QGIS (not the topt provider: child algorithms are referenced by id).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "models" / "train_and_predict.model3"


def build_model():
    from qgis.core import (QgsProcessing, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource as Src, QgsProcessingModelOutput,
                           QgsProcessingModelParameter, QgsProcessingParameterEnum,
                           QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                           QgsProcessingParameterNumber, QgsProcessingParameterString)
    from qgis.PyQt.QtCore import QPointF

    model = QgsProcessingModelAlgorithm("Train region embeddings and predict", "ToPT", "topt_train_and_predict")
    model.setHelpContent({
        "ALG_DESC": "Learns SREL region embeddings from a region layer with POIs, an OD table and land-use "
                    "fields (topt:train_regions), then predicts a numeric target known on some regions for "
                    "every region with Prompt4RE (topt:predict_regions), with a cross-validated HTML report.",
        "ALG_CREATOR": "ToPT for QGIS"})

    def param(definition, x, y):
        model.addModelParameter(definition, QgsProcessingModelParameter(definition.name()))
        model.parameterComponent(definition.name()).setPosition(QPointF(x, y))

    P, F, N = QgsProcessingParameterFeatureSource, QgsProcessingParameterField, QgsProcessingParameterNumber
    param(P("regions", "Regions", [QgsProcessing.TypeVectorPolygon]), 120, 60)
    param(F("region_id", "Region id field", parentLayerParameterName="regions", optional=True), 120, 120)
    param(P("pois", "POIs", [QgsProcessing.TypeVectorPoint], optional=True), 320, 60)
    param(F("poi_category", "POI category field", parentLayerParameterName="pois", optional=True), 320, 120)
    param(P("od_table", "OD table (origin id, destination id, trips)", [QgsProcessing.TypeVector], optional=True),
          520, 60)
    param(F("od_origin", "OD origin id field", parentLayerParameterName="od_table", optional=True), 520, 120)
    param(F("od_destination", "OD destination id field", parentLayerParameterName="od_table", optional=True),
          520, 180)
    param(F("od_trips", "OD trip count field", parentLayerParameterName="od_table", type=F.Numeric,
            optional=True), 520, 240)
    param(F("landuse_fields", "Land-use amount fields on the regions", parentLayerParameterName="regions",
            type=F.Numeric, allowMultiple=True, optional=True), 120, 180)
    param(F("target", "Target field to predict (empty = unknown)", parentLayerParameterName="regions",
            type=F.Numeric), 720, 60)
    param(QgsProcessingParameterEnum("task", "Task template", options=["crime", "checkin", "service", "generic"],
                                     defaultValue="generic", usesStaticStrings=True), 720, 120)
    from topt_core.config import PromptConfig, SrelConfig

    param(QgsProcessingParameterString("text_encoder", "Frozen text encoder",
                                       defaultValue=PromptConfig().text_encoder), 720, 180)
    param(N("embed_dim", "Embedding size", N.Integer, SrelConfig().embed_dim, minValue=2), 120, 240)
    param(N("train_epochs", "SREL maximum epochs", N.Integer, SrelConfig().epochs, minValue=1), 120, 300)
    param(N("head_epochs", "Prompt4RE maximum head epochs", N.Integer, PromptConfig().epochs, minValue=0), 720, 240)
    param(N("folds", "Cross-validation folds", N.Integer, PromptConfig().folds, minValue=2), 720, 300)

    train = QgsProcessingModelChildAlgorithm("topt:train_regions")
    train.setChildId("train_regions")
    train.setDescription("Train region embeddings (SREL)")
    train.setPosition(QPointF(320, 400))
    for name, source in (("REGIONS", "regions"), ("REGION_ID_FIELD", "region_id"), ("POIS", "pois"),
                         ("POI_CATEGORY_FIELD", "poi_category"), ("MOBILITY", "od_table"),
                         ("MOBILITY_ORIGIN_FIELD", "od_origin"), ("MOBILITY_DESTINATION_FIELD", "od_destination"),
                         ("MOBILITY_COUNT_FIELD", "od_trips"), ("LANDUSE_FIELDS", "landuse_fields"),
                         ("EMBED_DIM", "embed_dim"), ("EPOCHS", "train_epochs")):
        train.addParameterSources(name, [Src.fromModelParameter(source)])
    for name, value in (("DEVICE", "auto"), ("SEED", SrelConfig().seed)):
        train.addParameterSources(name, [Src.fromStaticValue(value)])
    emb_out = QgsProcessingModelOutput("embeddings", "Region embeddings")
    emb_out.setChildId("train_regions")
    emb_out.setChildOutputName("OUTPUT")
    model_out = QgsProcessingModelOutput("model_folder", "Model folder")
    model_out.setChildId("train_regions")
    model_out.setChildOutputName("OUTPUT_MODEL")
    train.setModelOutputs({"embeddings": emb_out, "model_folder": model_out})
    model.addChildAlgorithm(train)

    predict = QgsProcessingModelChildAlgorithm("topt:predict_regions")
    predict.setChildId("predict_regions")
    predict.setDescription("Predict a region attribute (Prompt4RE)")
    predict.setPosition(QPointF(520, 560))
    predict.addParameterSources("INPUT", [Src.fromChildOutput("train_regions", "OUTPUT")])
    predict.addParameterSources("MODEL", [Src.fromChildOutput("train_regions", "OUTPUT_MODEL")])
    predict.addParameterSources("REGION_ID_FIELD", [Src.fromModelParameter("region_id")])
    for name, source in (("TARGET_FIELD", "target"), ("TASK", "task"), ("TEXT_ENCODER", "text_encoder"),
                         ("EPOCHS", "head_epochs"), ("FOLDS", "folds")):
        predict.addParameterSources(name, [Src.fromModelParameter(source)])
    predict.addParameterSources("DEVICE", [Src.fromStaticValue("auto")])
    pred_out = QgsProcessingModelOutput("predictions", "Predictions")
    pred_out.setChildId("predict_regions")
    pred_out.setChildOutputName("OUTPUT")
    rep_out = QgsProcessingModelOutput("report", "Prediction report")
    rep_out.setChildId("predict_regions")
    rep_out.setChildOutputName("OUTPUT_REPORT")
    predict.setModelOutputs({"predictions": pred_out, "report": rep_out})
    model.addChildAlgorithm(predict)
    return model


def main(out: Path = OUT) -> Path:
    from qgis.core import QgsApplication

    app = QgsApplication.instance()
    own = app is None
    if own:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QgsApplication([], False)
        app.initQgis()
    sys.path.insert(0, str(ROOT))
    model = build_model()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(out)):
        raise SystemExit(f"could not write {out}")
    print(f"{out}: {len(model.childAlgorithms())} child algorithms, {len(model.parameterDefinitions())} inputs")
    if own:
        app.exitQgis()
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
