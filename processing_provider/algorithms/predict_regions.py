"""``topt:predict_regions``: embeddings + a partly known target + a task -> Prompt4RE predictions and a report."""
from __future__ import annotations

import dataclasses

import numpy as np
from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingOutputString, QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsWkbTypes)

from topt_core.config import PromptConfig
from topt_core.evaluate import PROTOCOLS

from .. import layers, outputs
from ..feedback import FeedbackReporter
from .base import RUNTIME_DEPS, ToptAlgorithm
from .train_regions import DEVICES, advanced, enum_param

DEFAULTS = PromptConfig()
TASKS = ("crime", "checkin", "service", "generic")
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(PromptConfig)}


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
    MAE, RMSE, R2 = "MAE", "RMSE", "R2"
    RIDGE_MAE, RIDGE_RMSE, RIDGE_R2 = "RIDGE_MAE", "RIDGE_RMSE", "RIDGE_R2"
    LABELLED = "LABELLED"
    PRED_FIELD = "PRED_FIELD"

    dependencies = tuple(RUNTIME_DEPS) + ("transformers",)

    def name(self):
        return "predict_regions"

    def displayName(self):  # noqa: N802
        return self.tr("Predict a region attribute (Prompt4RE)")

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
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.USE_TASK_TEMPLATE, self.tr("Use the task template in prompts"), d.use_task_template)))
        self.addParameter(enum_param(self.PROTOCOL, self.tr("Outer cross-validation protocol"), tuple(PROTOCOLS),
                                     d.protocol, advanced=True))
        self.addParameter(advanced(N(self.FOLDS, self.tr("Outer folds"), N.Integer, d.folds, minValue=2,
                                     maxValue=100)))
        self.addParameter(advanced(N(self.EPOCHS, self.tr("Maximum head epochs"), N.Integer, d.epochs,
                                     minValue=0, maxValue=100000)))
        self.addParameter(advanced(N(self.LEARNING_RATE, self.tr("Head learning rate"), N.Double, d.lr,
                                     minValue=1e-7, maxValue=1.0)))
        if "target_transform" in _CONFIG_FIELDS:
            self.addParameter(enum_param(self.TARGET_TRANSFORM, self.tr("Target transform"), ("none", "log1p"),
                                         d.target_transform, advanced=True))
        self.addParameter(enum_param(self.DEVICE, self.tr("Device"), DEVICES, d.device))
        self.addParameter(N(self.SEED, self.tr("Random seed"), N.Integer, d.seed, minValue=0))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Predictions"),
                                                            QgsProcessing.TypeVectorAnyGeometry))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, self.tr("Report"), self.tr("HTML files (*.html)"), optional=True,
            createByDefault=True))
        for key, desc in ((self.MAE, "Cross-validated MAE"), (self.RMSE, "Cross-validated RMSE"),
                          (self.R2, "Cross-validated R²"), (self.RIDGE_MAE, "Ridge baseline MAE"),
                          (self.RIDGE_RMSE, "Ridge baseline RMSE"), (self.RIDGE_R2, "Ridge baseline R²"),
                          (self.LABELLED, "Labelled regions")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(desc)))
        self.addOutput(QgsProcessingOutputString(self.PRED_FIELD, self.tr("Prediction field name")))

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
                      seed=self.parameterAsInt(parameters, self.SEED, context))
        if "target_transform" in _CONFIG_FIELDS:
            values["target_transform"] = self.parameterAsEnumString(parameters, self.TARGET_TRANSFORM, context)
        return DEFAULTS.replace(**{k: v for k, v in values.items() if k in _CONFIG_FIELDS})

    @staticmethod
    def match_ids(features, fields, id_field, stored_ids, feedback):
        """(layer ids, rows into the stored data or None): by REGION_ID_FIELD, else the best-matching field."""
        stored = {str(x): i for i, x in enumerate(stored_ids)}
        candidates = [id_field] if id_field else [f.name() for f in fields]
        best = (0, None, None)
        for name in candidates:
            idx = fields.indexFromName(name)
            from topt_core.views import id_string

            ids = [id_string(layers._value(f.attribute(idx))) for f in features]
            hits = sum(1 for x in ids if x in stored)
            if hits > best[0]:
                best = (hits, name, ids)
        if not id_field:
            fids = [str(f.id()) for f in features]
            hits = sum(1 for x in fids if x in stored)
            if hits > best[0]:
                best = (hits, "(feature id)", fids)
        hits, name, ids = best
        if name is None or hits < len(features):
            if id_field or hits:
                feedback.pushWarning(f"Only {hits} of {len(features)} regions match a region id stored in the "
                                     f"model{' by ' + name if name else ''}; region descriptions will come from "
                                     "the layer instead of the model's views.")
            return ids, None
        if not id_field:
            feedback.pushInfo(f"Regions matched to the model's stored regions by the field '{name}'.")
        return ids, np.asarray([stored[x] for x in ids], dtype=np.int64)

    def layer_region_data(self, source, features, parameters, context, feedback, ids):
        """Descriptions from the layer itself: polygons (area, place, neighbours) + DESCRIPTION_FIELDS."""
        from topt_core.data import RegionData

        extra_names = self.parameterAsFields(parameters, self.DESCRIPTION_FIELDS, context)
        n = len(features)
        if ids is None or len(set(ids)) != n or any(x is None for x in ids):
            ids = [str(f.id()) for f in features]
        centroids, areas, adjacency, crs = np.zeros((n, 2)), np.zeros(n), None, "unknown"
        if QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.PolygonGeometry:
            reg = layers.read_regions(source, "", context, feedback, start=10, end=12)
            centroids, areas, crs = reg.centroids, reg.areas, reg.crs.authid()
            adjacency = layers.adjacency(reg, feedback)
        else:
            feedback.pushWarning("The input layer has no polygons and no model folder with stored views was "
                                 "given: region descriptions carry no place information.")
        extra = None
        if extra_names:
            extra = layers.matrix(features, source.fields(), extra_names, "DESCRIPTION_FIELDS", allow_null=True)
            extra = np.where(np.isfinite(extra), extra, 0.0)
        return RegionData(region_ids=np.asarray(ids, dtype=str), centroids=centroids, areas=areas, crs=crs,
                          extra=extra, extra_names=list(extra_names), adjacency=adjacency)

    # -- run -----------------------------------------------------------------------------------

    def run(self, parameters, context, feedback):
        from topt_core.checkpoint import load_region_data
        from topt_core.progress import StageReporter, check_canceled
        from topt_core.prompt import run_prompt4re
        from topt_core.views import subset_region_data

        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        config = self.prompt_config(parameters, context)
        fields = source.fields()
        target_field = self.parameterAsString(parameters, self.TARGET_FIELD, context)
        layers.field_or_fail(source, target_field, "TARGET_FIELD", numeric=True, layer_param="input layer")
        emb_names = layers.embedding_fields(fields, self.parameterAsFields(parameters, self.EMBEDDING_FIELDS,
                                                                           context))
        if target_field in emb_names:
            raise QgsProcessingException(f"TARGET_FIELD '{target_field}' is also an embedding field; choose a "
                                         "target that is not among EMBEDDING_FIELDS.")
        model_dir = self.parameterAsFile(parameters, self.MODEL, context)
        feedback.setProgressText(self.tr("Reading the layer"))
        features = layers.read_features(source, feedback, 0, 5)
        if len(features) < 2:
            raise QgsProcessingException(f"The input layer has {len(features)} feature(s); expected regions.")
        stored = load_region_data(model_dir) if model_dir else None
        if model_dir and stored is None:
            feedback.pushWarning(f"The model folder {model_dir} holds no region data; descriptions come from "
                                 "the layer.")
        id_field = self.parameterAsString(parameters, self.REGION_ID_FIELD, context)
        ids, rows = (self.match_ids(features, fields, id_field, stored.region_ids, feedback) if stored is not None
                     else (None, None))
        if rows is not None:
            data = subset_region_data(stored, rows)
            feedback.pushInfo(f"Region descriptions from the model's stored views ({', '.join(data.views())}).")
        else:
            data = self.layer_region_data(source, features, parameters, context, feedback, ids)
        reporter = FeedbackReporter(feedback)
        if emb_names:
            emb = layers.matrix(features, fields, emb_names, "EMBEDDING_FIELDS")
        elif rows is not None:
            from topt_core.srel import embed, load_model

            feedback.setProgressText(self.tr("Embedding regions with the saved model"))
            emb = embed(load_model(model_dir), data, StageReporter(reporter, 5, 10))
            feedback.pushInfo(f"No emb_* fields in the layer: embedded {data.n} regions with the model in "
                              f"{model_dir}.")
        else:
            raise QgsProcessingException(
                "The input layer has no emb_* fields and EMBEDDING_FIELDS is empty; use the output of "
                "'Train region embeddings', choose the embedding fields, or give MODEL (the model folder) with "
                "a layer whose region ids match the model's regions.")
        y = layers.matrix(features, fields, [target_field], "TARGET_FIELD", allow_null=True)[:, 0]
        n_lab = int(np.isfinite(y).sum())
        feedback.pushInfo(f"{target_field}: {n_lab} of {len(y)} regions labelled; {emb.shape[1]} embedding "
                          f"fields; task {config.task}; text encoder {config.text_encoder}.")
        feedback.setProgressText(self.tr("Prompt4RE"))
        pr = run_prompt4re(emb, data, y, target_field, config, StageReporter(reporter, 10, 95))
        check_canceled(reporter)
        feedback.setProgressText(self.tr("Writing outputs"))
        base = layers.safe_field_name(target_field, max_len=58)
        pred_name, oof_name = f"pred_{base}", f"oof_{base}"
        labelled = np.asarray(pr.labelled, dtype=bool)
        values = [[float(p), (float(o) if lab else None), int(lab)]
                  for p, o, lab in zip(pr.predictions, pr.oof, labelled)]
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        html = (self.report_html(source.sourceName(), target_field, pred_name, config, pr, y, emb_names, model_dir,
                                 rows is not None) if report else None)
        # the layer first (its writer checks for cancel before creating anything), the report after, so a
        # cancel at this stage leaves neither (hostile matrix, issue 6)
        dest = layers.write_sink(self, parameters, context, feedback, self.OUTPUT, features, fields,
                                 [layers.double_field(pred_name), layers.double_field(oof_name),
                                  layers.int_field("is_labelled")], values, source.wkbType(), source.sourceCrs())
        if report:
            outputs.atomic_text(report, html)
        outputs.style_on_load(context, dest, pred_name, "graduated")
        feedback.setProgress(100)
        m, r = pr.metrics, pr.ridge_metrics
        result = {self.OUTPUT: dest, self.MAE: float(m["mae"]), self.RMSE: float(m["rmse"]), self.R2: float(m["r2"]),
                  self.RIDGE_MAE: float(r["mae"]), self.RIDGE_RMSE: float(r["rmse"]), self.RIDGE_R2: float(r["r2"]),
                  self.LABELLED: n_lab, self.PRED_FIELD: pred_name}
        if report:
            result[self.OUTPUT_REPORT] = report
        return result

    # -- report --------------------------------------------------------------------------------

    def report_html(self, layer_name, target, pred_name, config, pr, y, emb_names, model_dir, from_model):
        lab = np.asarray(pr.labelled, dtype=bool)
        f = outputs.fmt
        metrics = outputs.table(["method", "MAE", "RMSE", "R²"], [
            ["Prompt4RE (out-of-fold)", f(pr.metrics["mae"]), f(pr.metrics["rmse"]), f(pr.metrics["r2"])],
            ["Ridge on embeddings (same folds)", f(pr.ridge_metrics["mae"]), f(pr.ridge_metrics["rmse"]),
             f(pr.ridge_metrics["r2"])]])
        scatter, hist = outputs.plots(y[lab], np.asarray(pr.oof)[lab], f"{target}: out-of-fold")
        settings = [["layer", layer_name], ["target field", target], ["prediction field", pred_name],
                    ["labelled regions", f"{int(lab.sum())} of {len(lab)}"],
                    ["embedding fields", f"{len(emb_names)}" + (f" ({emb_names[0]} .. {emb_names[-1]})"
                                                               if emb_names else " (computed with the model)")],
                    ["model folder", model_dir or "(none)"],
                    ["descriptions from", "the model's stored views" if from_model else "the layer"],
                    ["device", str(pr.device)],
                    ["timings", ", ".join(f"{k} {v:.1f} s" for k, v in (pr.timings or {}).items())]]
        settings += [[k, v] for k, v in (pr.config or config.to_dict()).items()]
        enc = outputs.table(["encoder", "value"], [[k, v] for k, v in (pr.encoder_info or {}).items()])
        chosen = ""
        if getattr(pr, "chosen", None):
            keys = list(pr.chosen[0].keys())
            chosen = outputs.table(keys, [[c.get(k) if not isinstance(c.get(k), float) else f(c.get(k), 4)
                                           for k in keys] for c in pr.chosen])
        shown = min(len(pr.prompts), 10)
        prompts = "".join(f"<h3>region {i}</h3><pre>{outputs.esc(pr.prompts[i])}</pre>" for i in range(shown))
        warn = ("<ul>" + "".join(f"<li>{outputs.esc(w)}</li>" for w in pr.warnings) + "</ul>") if pr.warnings else \
            "<p>none</p>"
        sections = [
            ("Cross-validated accuracy", metrics + "<p>Out-of-fold predictions of the labelled regions: each "
             "region is predicted by a head that never saw its label (nested cross-validation; model choice on "
             "inner splits of the training folds only).</p>"),
            ("Observed vs predicted", outputs.img(scatter, "observed vs predicted") + outputs.img(hist, "residuals")),
            ("Warnings", warn),
            ("Run settings", outputs.table(["setting", "value"], settings)),
            ("Text encoder", enc),
            ("Model selection per fold", chosen or "<p>n/a</p>"),
            (f"Prompts (first {shown} of {len(pr.prompts)})", prompts)]
        return outputs.html_page(f"ToPT prediction report: {target}", sections)
