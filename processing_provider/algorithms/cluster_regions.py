"""``topt:cluster_regions``: embeddings -> KMeans cluster id per region."""
from __future__ import annotations

import numpy as np
from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterNumber)

from ..adapters import reading, sinks, styles
from .base import ToptAlgorithm, advanced


class ClusterRegionsAlgorithm(ToptAlgorithm):
    INPUT = "INPUT"
    EMBEDDING_FIELDS = "EMBEDDING_FIELDS"
    K = "K"
    SEED = "SEED"
    N_INIT = "N_INIT"
    OUTPUT = "OUTPUT"
    CLUSTER_FIELD = "cluster"
    INERTIA = "INERTIA"
    CLUSTERS = "CLUSTERS"

    dependencies = ("sklearn", "scipy")   # no torch needed

    def name(self):
        return "cluster_regions"

    def displayName(self):  # noqa: N802
        return self.tr("4. Cluster regions by embedding (KMeans)")

    def shortDescription(self):  # noqa: N802
        return self.tr("Groups regions with similar embeddings into K clusters (a 'cluster' field).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource(self.INPUT, self.tr("Layer with embeddings"),
                                                              [QgsProcessing.TypeVector]))
        self.addParameter(QgsProcessingParameterField(
            self.EMBEDDING_FIELDS, self.tr("Embedding fields (empty: all emb_* fields)"),
            parentLayerParameterName=self.INPUT, type=QgsProcessingParameterField.Numeric, allowMultiple=True,
            optional=True))
        N = QgsProcessingParameterNumber
        self.addParameter(N(self.K, self.tr("Number of clusters (K)"), N.Integer, 12, minValue=2, maxValue=10000))
        self.addParameter(N(self.SEED, self.tr("Random seed"), N.Integer, 3, minValue=0))
        self.addParameter(advanced(N(self.N_INIT, self.tr("KMeans restarts"), N.Integer, 10, minValue=1,
                                     maxValue=1000)))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Clustered regions"),
                                                            QgsProcessing.TypeVectorAnyGeometry))
        self.addOutput(QgsProcessingOutputNumber(self.CLUSTERS, self.tr("Number of clusters")))
        self.addOutput(QgsProcessingOutputNumber(self.INERTIA, self.tr("Within-cluster sum of squares")))

    def run(self, parameters, context, feedback):
        from topt_core.evaluate import cluster_kmeans

        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        names = reading.embedding_fields(source.fields(),
                                        self.parameterAsFields(parameters, self.EMBEDDING_FIELDS, context))
        if not names:
            raise QgsProcessingException("The input layer has no emb_* fields and EMBEDDING_FIELDS is empty; "
                                         "run 'Train region embeddings' first or choose the embedding fields.")
        features = reading.read_features(source, feedback, 0, 30)
        k = self.parameterAsInt(parameters, self.K, context)
        if len(features) < k:
            raise QgsProcessingException(f"K={k} clusters but only {len(features)} regions; choose K <= "
                                         f"{len(features)}.")
        emb = reading.matrix(features, source.fields(), names, "EMBEDDING_FIELDS")
        feedback.setProgressText(self.tr(f"KMeans with K={k} on {emb.shape[1]} embedding fields"))
        labels, inertia = cluster_kmeans(emb, k, self.parameterAsInt(parameters, self.SEED, context),
                                         self.parameterAsInt(parameters, self.N_INIT, context))
        feedback.setProgress(80)
        sizes = np.bincount(labels, minlength=k)
        feedback.pushInfo(f"Cluster sizes: {', '.join(f'{c}: {s}' for c, s in enumerate(sizes))}.")
        dest = sinks.write_sink(self, parameters, context, feedback, self.OUTPUT, features, source.fields(),
                                 [sinks.int_field(self.CLUSTER_FIELD)], [[int(x)] for x in labels],
                                 source.wkbType(), source.sourceCrs())
        styles.style_output(context, dest, self.CLUSTER_FIELD, "categorized")
        feedback.setProgress(100)
        return {self.OUTPUT: dest, self.CLUSTERS: k, self.INERTIA: inertia}
