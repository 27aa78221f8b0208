"""``topt:evaluate_embeddings``: the published protocols (Ridge k-fold; KMeans NMI/ARI) on any embedding fields."""
from __future__ import annotations

import numpy as np
from qgis.core import (QgsFields, QgsProcessing, QgsProcessingException,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsWkbTypes, QgsCoordinateReferenceSystem)

from topt_core.evaluate import PROTOCOLS

from ..adapters import reading, sinks
from .base import ToptAlgorithm, advanced, enum_param

PROTOCOL_NAMES = tuple(k for k, p in PROTOCOLS.items() if not p.spatial)   # the table has no locations


class EvaluateEmbeddingsAlgorithm(ToptAlgorithm):
    dependencies = ("sklearn", "scipy")   # no torch needed
    INPUT = "INPUT"
    EMBEDDING_FIELDS = "EMBEDDING_FIELDS"
    TARGET_FIELDS = "TARGET_FIELDS"
    PROTOCOL = "PROTOCOL"
    ALPHA = "ALPHA"
    CLUSTER_LABEL_FIELD = "CLUSTER_LABEL_FIELD"
    N_CLUSTERS = "N_CLUSTERS"
    OUTPUT = "OUTPUT"
    OUTPUT_REPORT = "OUTPUT_REPORT"

    def name(self):
        return "evaluate_embeddings"

    def displayName(self):  # noqa: N802
        return self.tr("3. Evaluate embeddings (published protocols)")

    def shortDescription(self):  # noqa: N802
        return self.tr("Scores embedding fields with the literature's protocols: Ridge k-fold MAE/RMSE/R² per "
                       "target, and KMeans NMI/ARI against reference labels.")

    def initAlgorithm(self, config=None):  # noqa: N802
        F = QgsProcessingParameterField
        self.addParameter(QgsProcessingParameterFeatureSource(self.INPUT, self.tr("Layer with embeddings"),
                                                              [QgsProcessing.TypeVector]))
        self.addParameter(F(self.EMBEDDING_FIELDS, self.tr("Embedding fields (empty: all emb_* fields)"),
                            parentLayerParameterName=self.INPUT, type=F.Numeric, allowMultiple=True, optional=True))
        self.addParameter(F(self.TARGET_FIELDS, self.tr("Target fields (regression)"),
                            parentLayerParameterName=self.INPUT, type=F.Numeric, allowMultiple=True, optional=True))
        self.addParameter(enum_param(self.PROTOCOL, self.tr("Protocol (folds)"), PROTOCOL_NAMES, "hafusion-ny"))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.ALPHA, self.tr("Ridge alpha"), QgsProcessingParameterNumber.Double, 1.0, minValue=0.0)))
        self.addParameter(F(self.CLUSTER_LABEL_FIELD, self.tr("Reference cluster labels (NMI/ARI)"),
                            parentLayerParameterName=self.INPUT, optional=True))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.N_CLUSTERS, self.tr("KMeans clusters for NMI/ARI"), QgsProcessingParameterNumber.Integer, 12,
            minValue=2)))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Evaluation table"),
                                                            QgsProcessing.TypeVector))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, self.tr("Evaluation report"),
                                                                self.tr("HTML files (*.html)"), optional=True,
                                                                createByDefault=False))

    def run(self, parameters, context, feedback):
        from topt_core.evaluate import kmeans_clustering_scores, ridge_kfold
        from topt_core.files import write_text
        from topt_core.report import evaluation_report

        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        fields = source.fields()
        names = reading.embedding_fields(fields, self.parameterAsFields(parameters, self.EMBEDDING_FIELDS, context))
        if not names:
            raise QgsProcessingException("The input layer has no emb_* fields and EMBEDDING_FIELDS is empty; "
                                         "choose the embedding fields.")
        targets = self.parameterAsFields(parameters, self.TARGET_FIELDS, context)
        label_field = self.parameterAsString(parameters, self.CLUSTER_LABEL_FIELD, context)
        if not targets and not label_field:
            raise QgsProcessingException("Nothing to evaluate: set TARGET_FIELDS (regression) and/or "
                                         "CLUSTER_LABEL_FIELD (clustering).")
        overlap = set(targets) & set(names)
        if overlap:
            raise QgsProcessingException(f"The fields {sorted(overlap)} are both embedding and target fields; "
                                         "a target must not be among the embedding fields.")
        protocol = self.parameterAsEnumString(parameters, self.PROTOCOL, context)
        alpha = self.parameterAsDouble(parameters, self.ALPHA, context)
        features = reading.read_features(source, feedback, 0, 20)
        emb = reading.matrix(features, fields, names, "EMBEDDING_FIELDS")
        rows, oofs = [], {}
        for t, target in enumerate(targets):
            reading.check_cancel(feedback)
            y = reading.matrix(features, fields, [target], "TARGET_FIELDS", allow_null=True)[:, 0]
            known = np.isfinite(y)
            feedback.setProgressText(f"Ridge k-fold ({protocol}) on {target}: {int(known.sum())} regions")
            metrics, oof = ridge_kfold(emb[known], y[known], protocol=protocol, alpha=alpha)
            rows.append([target, "ridge", protocol, int(known.sum()), metrics["mae"], metrics["rmse"],
                         metrics["r2"], None, None])
            oofs[target] = (y[known], oof, np.flatnonzero(known))
            feedback.pushInfo(f"{target}: MAE {metrics['mae']:.3f}, RMSE {metrics['rmse']:.3f}, "
                              f"R² {metrics['r2']:.3f} ({int(known.sum())} regions, {protocol}).")
            feedback.setProgress(20 + 60 * (t + 1) / max(len(targets), 1))
        if label_field:
            k = self.parameterAsInt(parameters, self.N_CLUSTERS, context)
            lidx = reading.field_or_fail(source, label_field, "CLUSTER_LABEL_FIELD")
            labels = [reading.value(f.attribute(lidx)) for f in features]
            known = np.asarray([v is not None for v in labels])
            lab = np.asarray([str(v) for v, ok in zip(labels, known) if ok])
            if known.sum() < k:
                raise QgsProcessingException(f"Only {int(known.sum())} regions have a label in '{label_field}'; "
                                             f"KMeans needs at least N_CLUSTERS={k}.")
            sc = kmeans_clustering_scores(emb[known], lab, n_clusters=k)
            rows.append([label_field, f"kmeans{k}", "kmeans-rs3", int(known.sum()), None, None, None,
                         sc["nmi"], sc["ari"]])
            feedback.pushInfo(f"{label_field}: NMI {sc['nmi']:.3f}, ARI {sc['ari']:.3f} (KMeans {k}, "
                              "random_state=3, n_init=10).")
        out_fields = QgsFields()
        cols = [("target", "str"), ("method", "str"), ("protocol", "str"), ("n", "int"), ("mae", "dbl"),
                ("rmse", "dbl"), ("r2", "dbl"), ("nmi", "dbl"), ("ari", "dbl")]
        from qgis.core import QgsField
        from qgis.PyQt.QtCore import QVariant

        for name, kind in cols:
            out_fields.append(sinks.double_field(name) if kind == "dbl" else (
                sinks.int_field(name) if kind == "int" else QgsField(name, QVariant.String, "string", 80)))
        reading.check_cancel(feedback)     # before anything is written: a cancel leaves no report behind
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        if report:
            write_text(report, evaluation_report(source.sourceName(), names, protocol, alpha, rows, oofs,
                                                     shapes=reading.polygon_rings(features)))
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, out_fields, QgsWkbTypes.NoGeometry,
                                          QgsCoordinateReferenceSystem())
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        from qgis.core import QgsFeature, QgsFeatureSink

        for row in rows:
            f = QgsFeature(out_fields)
            f.setAttributes([sinks.py_value(v) for v in row])
            sink.addFeature(f, QgsFeatureSink.FastInsert)
        sinks.close_sink(sink)
        del sink
        feedback.setProgress(100)
        result = {self.OUTPUT: dest}
        if report:
            result[self.OUTPUT_REPORT] = report
        return result
