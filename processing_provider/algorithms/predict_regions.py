"""``topt:predict_regions``: embeddings + a partly known target + a task -> Prompt4RE predictions and a report."""
from __future__ import annotations

import numpy as np
from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingOutputString, QgsProcessingParameterBoolean,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsWkbTypes)

from topt_core.config import TARGET_TRANSFORMS, TASKS, TEXT_INPUTS, USE_HEAD_CHOICES, PromptConfig
from topt_core.evaluate import PROTOCOLS
from topt_core.files import write_text
from topt_core.naming import fit_names, name_limit, safe_field_name

from ..adapters import reading, regions, sinks, styles
from ..feedback import FeedbackReporter
from .base import DEVICES, RUNTIME_DEPS, ToptAlgorithm, advanced, enum_param

DEFAULTS = PromptConfig()


class PredictRegionsAlgorithm(ToptAlgorithm):
    INPUT = "INPUT"
    EMBEDDING_FIELDS = "EMBEDDING_FIELDS"
    TARGET_FIELD = "TARGET_FIELD"
    TASK = "TASK"
    TASK_DESCRIPTION = "TASK_DESCRIPTION"
    TEXT_ENCODER = "TEXT_ENCODER"
    MODEL = "MODEL"
    REGION_ID_FIELD = "REGION_ID_FIELD"
    DESCRIPTION_FIELDS = "DESCRIPTION_FIELDS"
    TEXT_FIELDS = "TEXT_FIELDS"
    LEVEL = "LEVEL"
    USE_HEAD = "USE_HEAD"
    TEXT_INPUT = "TEXT_INPUT"
    COVERAGE, WIDTH = "COVERAGE", "WIDTH"
    USE_TASK_TEMPLATE = "USE_TASK_TEMPLATE"
    PROTOCOL = "PROTOCOL"
    FOLDS = "FOLDS"
    EPOCHS = "EPOCHS"
    LEARNING_RATE = "LEARNING_RATE"
    TARGET_TRANSFORM = "TARGET_TRANSFORM"
    DEVICE = "DEVICE"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    OUTPUT_EVIDENCE = "OUTPUT_EVIDENCE"
    MAE, RMSE, R2 = "MAE", "RMSE", "R2"
    RIDGE_MAE, RIDGE_RMSE, RIDGE_R2 = "RIDGE_MAE", "RIDGE_RMSE", "RIDGE_R2"
    LABELLED = "LABELLED"
    PRED_FIELD = "PRED_FIELD"
    OOF_FIELD = "OOF_FIELD"

    dependencies = tuple(RUNTIME_DEPS) + ("transformers",)

    def name(self):
        return "predict_regions"

    def displayName(self):  # noqa: N802
        return self.tr("2. Predict a region attribute (Prompt4RE)")

    def shortDescription(self):  # noqa: N802
        return self.tr("Predicts a numeric target known on some regions for every region, from the embeddings "
                       "and task prompts read by a frozen language model; cross-validated MAE/RMSE/R² and an "
                       "HTML report.")

    def initAlgorithm(self, config=None):  # noqa: N802
        F = QgsProcessingParameterField
        N = QgsProcessingParameterNumber
        d = DEFAULTS
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr("Regions with embeddings (output of 'Train region embeddings')"),
            [QgsProcessing.TypeVector]))
        self.addParameter(F(self.EMBEDDING_FIELDS, self.tr("Embedding fields (empty: all emb_* fields)"),
                            parentLayerParameterName=self.INPUT, type=F.Numeric, allowMultiple=True, optional=True))
        self.addParameter(F(self.TARGET_FIELD, self.tr("Target field (empty = unknown, predicted)"),
                            parentLayerParameterName=self.INPUT, type=F.Numeric))
        self.addParameter(enum_param(self.TASK, self.tr("Task template"), TASKS, "generic"))
        self.addParameter(QgsProcessingParameterString(self.TASK_DESCRIPTION, self.tr("Task description (free text)"),
                                                       defaultValue="", multiLine=True, optional=True))
        self.addParameter(QgsProcessingParameterString(self.TEXT_ENCODER, self.tr("Frozen text encoder"),
                                                       defaultValue=d.text_encoder))
        self.addParameter(QgsProcessingParameterFile(self.MODEL, self.tr("Model folder from 'Train region embeddings'"),
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(F(self.REGION_ID_FIELD, self.tr("Region id field (to match the model's regions)"),
                            parentLayerParameterName=self.INPUT, optional=True))
        self.addParameter(F(self.DESCRIPTION_FIELDS, self.tr("Numeric fields to describe regions (without model)"),
                            parentLayerParameterName=self.INPUT, type=F.Numeric, allowMultiple=True, optional=True))
        self.addParameter(F(self.TEXT_FIELDS, self.tr("Text fields describing regions (names, zoning, notes)"),
                            parentLayerParameterName=self.INPUT, allowMultiple=True, optional=True))
        self.addParameter(N(self.LEVEL, self.tr("Prediction interval level"), N.Double, d.level, minValue=0.5,
                            maxValue=0.99))
        self.addParameter(enum_param(self.USE_HEAD, self.tr("Cross-attention head route (Prompt4RE)"),
                                     USE_HEAD_CHOICES, d.use_head, advanced=True))
        self.addParameter(enum_param(self.TEXT_INPUT, self.tr("What the language model reads"), TEXT_INPUTS,
                                     d.text_input, advanced=True))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.USE_TASK_TEMPLATE, self.tr("Use the task template in prompts"), d.use_task_template)))
        self.addParameter(enum_param(self.PROTOCOL, self.tr("Outer cross-validation protocol"), tuple(PROTOCOLS),
                                     d.protocol, advanced=True))
        self.addParameter(advanced(N(self.FOLDS, self.tr("Outer folds (0: the protocol's own)"), N.Integer, d.folds,
                                     minValue=0, maxValue=100)))
        self.addParameter(advanced(N(self.EPOCHS, self.tr("Maximum head epochs"), N.Integer, d.epochs,
                                     minValue=0, maxValue=100000)))
        self.addParameter(advanced(N(self.LEARNING_RATE, self.tr("Head learning rate"), N.Double, d.lr,
                                     minValue=1e-7, maxValue=1.0)))
        self.addParameter(enum_param(self.TARGET_TRANSFORM, self.tr("Target transform"), TARGET_TRANSFORMS,
                                     d.target_transform, advanced=True))
        self.addParameter(enum_param(self.DEVICE, self.tr("Device"), DEVICES, d.device))
        self.addParameter(N(self.SEED, self.tr("Random seed"), N.Integer, d.seed, minValue=0))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Predictions"),
                                                            QgsProcessing.TypeVectorAnyGeometry))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_EVIDENCE, self.tr("Evidence: each region's strongest labelled neighbours"),
            QgsProcessing.TypeVectorLine, optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True,
            createByDefault=True))
        for key, desc in ((self.MAE, "Cross-validated MAE"), (self.RMSE, "Cross-validated RMSE"),
                          (self.R2, "Cross-validated R²"), (self.RIDGE_MAE, "Ridge baseline MAE"),
                          (self.RIDGE_RMSE, "Ridge baseline RMSE"), (self.RIDGE_R2, "Ridge baseline R²"),
                          (self.LABELLED, "Labelled regions"),
                          (self.COVERAGE, "Share of labelled regions inside their out-of-fold interval"),
                          (self.WIDTH, "Mean interval width")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(desc)))
        self.addOutput(QgsProcessingOutputString(self.PRED_FIELD, self.tr("Prediction field name")))
        self.addOutput(QgsProcessingOutputString(self.OOF_FIELD, self.tr("Out-of-fold prediction field name")))

    # -- parsing -------------------------------------------------------------------------------

    def prompt_config(self, parameters, context) -> PromptConfig:
        s = lambda k: self.parameterAsString(parameters, k, context)  # noqa: E731
        values = dict(text_encoder=s(self.TEXT_ENCODER).strip() or DEFAULTS.text_encoder,
                      task=self.parameterAsEnumString(parameters, self.TASK, context),
                      task_description=s(self.TASK_DESCRIPTION),
                      use_task_template=self.parameterAsBoolean(parameters, self.USE_TASK_TEMPLATE, context),
                      protocol=self.parameterAsEnumString(parameters, self.PROTOCOL, context),
                      folds=self.parameterAsInt(parameters, self.FOLDS, context),
                      epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
                      lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
                      device=self.parameterAsEnumString(parameters, self.DEVICE, context),
                      seed=self.parameterAsInt(parameters, self.SEED, context),
                      target_transform=self.parameterAsEnumString(parameters, self.TARGET_TRANSFORM, context),
                      level=self.parameterAsDouble(parameters, self.LEVEL, context),
                      use_head=self.parameterAsEnumString(parameters, self.USE_HEAD, context),
                      text_input=self.parameterAsEnumString(parameters, self.TEXT_INPUT, context))
        return DEFAULTS.replace(**values)

    def layer_region_data(self, source, features, parameters, context, feedback, ids):
        """Descriptions from the layer itself: polygons (area, place, neighbours) + DESCRIPTION_FIELDS."""
        from topt_core.data import RegionData

        extra_names = self.parameterAsFields(parameters, self.DESCRIPTION_FIELDS, context)
        n = len(features)
        if ids is None or len(set(ids)) != n or any(x is None for x in ids):
            ids = [str(f.id()) for f in features]
        centroids, areas, adjacency, crs = np.zeros((n, 2)), np.zeros(n), None, "unknown"
        if QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.PolygonGeometry:
            reg = regions.read_regions(source, "", context, feedback, start=10, end=12)
            centroids, areas, crs = reg.centroids_m, reg.areas_m2, reg.crs.authid()
            adjacency = regions.adjacency(reg, feedback)
        else:
            feedback.pushWarning("The input layer has no polygons and no model folder with stored views was "
                                 "given: region descriptions carry no place information.")
        extra = None
        if extra_names:
            extra = reading.matrix(features, source.fields(), extra_names, "DESCRIPTION_FIELDS", allow_null=True)
            extra = np.where(np.isfinite(extra), extra, 0.0)
        return RegionData(region_ids=np.asarray(ids, dtype=str), centroids=centroids, areas=areas, crs=crs,
                          extra=extra, extra_names=list(extra_names), adjacency=adjacency)

    # -- run -----------------------------------------------------------------------------------

    def run(self, parameters, context, feedback):
        from topt_core.prediction import prediction_data, prediction_embeddings
        from topt_core.progress import StageReporter, check_canceled
        from topt_core.prompt import run_prompt4re
        from topt_core.report import prediction_report

        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        config = self.prompt_config(parameters, context)
        fields = source.fields()
        target_field = self.parameterAsString(parameters, self.TARGET_FIELD, context)
        reading.field_or_fail(source, target_field, "TARGET_FIELD", numeric=True, layer_param="input layer")
        emb_names = reading.embedding_fields(fields, self.parameterAsFields(parameters, self.EMBEDDING_FIELDS,
                                                                            context))
        if target_field in emb_names:
            raise QgsProcessingException(f"TARGET_FIELD '{target_field}' is also an embedding field; choose a "
                                         "target that is not among EMBEDDING_FIELDS.")
        model_dir = self.parameterAsFile(parameters, self.MODEL, context)
        feedback.setProgressText(self.tr("Reading the layer"))
        features = reading.read_features(source, feedback, 0, 5)
        if len(features) < 2:
            raise QgsProcessingException(f"The input layer has {len(features)} feature(s); expected regions.")
        reporter = FeedbackReporter(feedback)
        columns = {f.name(): [reading.value(ft.attribute(i)) for ft in features] for i, f in enumerate(fields)}
        data, match = prediction_data(
            columns, [ft.id() for ft in features], model_dir,
            self.parameterAsString(parameters, self.REGION_ID_FIELD, context),
            lambda ids: self.layer_region_data(source, features, parameters, context, feedback, ids), reporter)
        for name in self.parameterAsFields(parameters, self.TEXT_FIELDS, context):
            reading.field_or_fail(source, name, "TEXT_FIELDS", layer_param="input layer")
            data.texts[name] = np.asarray(["" if v is None else str(v) for v in columns[name]], dtype=object)
        emb = reading.matrix(features, fields, emb_names, "EMBEDDING_FIELDS") if emb_names else None
        emb = prediction_embeddings(emb, model_dir, data, match, reporter)
        y = reading.matrix(features, fields, [target_field], "TARGET_FIELD", allow_null=True)[:, 0]
        n_lab = int(np.isfinite(y).sum())
        feedback.pushInfo(f"{target_field}: {n_lab} of {len(y)} regions labelled; {emb.shape[1]} embedding "
                          f"fields; task {config.task}; text encoder {config.text_encoder}.")
        feedback.setProgressText(self.tr("Prompt4RE"))
        pr = run_prompt4re(emb, data, y, target_field, config, StageReporter(reporter, 10, 95))
        check_canceled(reporter)
        feedback.setProgressText(self.tr("Writing outputs"))
        base = safe_field_name(target_field, max_len=58)
        destination = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        limit = name_limit(destination)
        pred_name, oof_name, lab_name, lo_name, hi_name, why_name = fit_names(
            [f"pred_{base}", f"oof_{base}", "is_labelled", "pred_lo", "pred_hi", "why"], limit)
        if limit:
            feedback.pushInfo(f"This output format keeps field names to {limit} characters: the fields are "
                              f"{pred_name}, {oof_name}, {lab_name}, {lo_name} and {hi_name}.")
        labelled = np.asarray(pr.labelled, dtype=bool)
        from topt_core.prompt.why import evidence, why_texts

        reasons = why_texts(pr, data.region_ids)
        values = [[float(p), (float(o) if lab else None), int(lab), float(a), float(b), r]
                  for p, o, lab, a, b, r in zip(pr.predictions, pr.oof, labelled, pr.lo, pr.hi, reasons)]
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        from_model = match is not None and match.rows is not None
        html = (prediction_report(source.sourceName(), target_field, pred_name, config, pr, y, emb_names, model_dir,
                                  from_model, shapes=reading.polygon_rings(features)) if report else None)
        # the layer first (its writer checks for cancel before creating anything), the report after, so a
        # cancel at this stage leaves neither (hostile matrix, issue 6)
        dest = sinks.write_sink(self, parameters, context, feedback, self.OUTPUT, features, fields,
                                [sinks.double_field(pred_name), sinks.double_field(oof_name),
                                 sinks.int_field(lab_name), sinks.double_field(lo_name), sinks.double_field(hi_name),
                                 sinks.text_field(why_name)],
                                values, source.wkbType(), source.sourceCrs())
        evidence_dest = None
        if self.wants(parameters, self.OUTPUT_EVIDENCE):
            tgt, src, w = evidence(pr)
            evidence_dest = sinks.write_evidence(self, parameters, context, feedback, self.OUTPUT_EVIDENCE, features,
                                                 source.sourceCrs(), tgt, src, w, data.region_ids)
        if report:
            write_text(report, html)
        styles.style_output(context, dest, pred_name, "graduated",
                            extra=[("interval width", f'"{hi_name}" - "{lo_name}"')])
        feedback.setProgress(100)
        m, r = pr.metrics, pr.ridge_metrics
        result = {self.OUTPUT: dest, self.MAE: float(m["mae"]), self.RMSE: float(m["rmse"]), self.R2: float(m["r2"]),
                  self.RIDGE_MAE: float(r["mae"]), self.RIDGE_RMSE: float(r["rmse"]), self.RIDGE_R2: float(r["r2"]),
                  self.LABELLED: n_lab, self.PRED_FIELD: pred_name, self.OOF_FIELD: oof_name,
                  self.COVERAGE: float(pr.coverage), self.WIDTH: float(pr.width)}
        if report:
            result[self.OUTPUT_REPORT] = report
        if evidence_dest:
            styles.style_output(context, evidence_dest, "weight", "links")
            result[self.OUTPUT_EVIDENCE] = evidence_dest
        return result
