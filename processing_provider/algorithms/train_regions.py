"""``topt:train_regions``: regions (+ POIs, mobility, land use) -> SREL embeddings + a saved model."""
from __future__ import annotations

import numpy as np
from qgis.core import (QgsProcessing, QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBoolean, QgsProcessingParameterCrs, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from topt_core.config import (ATTENTION_MODES, NEIGHBOUR_MODES, SPARSE_RECIPES, SPATIAL_BIASES, SrelConfig,
                               parse_view_weights)

from ..adapters import regions, sinks, spatial_join, styles
from ..feedback import FeedbackReporter
from .base import DEVICES, ToptAlgorithm, add_view_parameters, advanced, enum_param, view_values

DEFAULTS = SrelConfig()


class TrainRegionsAlgorithm(ToptAlgorithm):
    REGIONS = "REGIONS"
    REGION_ID_FIELD = "REGION_ID_FIELD"
    REGION_NAME_FIELD = "REGION_NAME_FIELD"
    TEXT_FIELDS = "TEXT_FIELDS"
    # the views' parameters (POIS, MOBILITY, LANDUSE, EXTRA_FIELDS, ...) are declared by the views themselves
    # (topt_core/views/*.py ``sources``) and added by ``add_view_parameters``
    DISTANCE_CRS = "DISTANCE_CRS"
    EMBED_DIM = "EMBED_DIM"
    HIDDEN_DIM = "HIDDEN_DIM"
    LAYERS = "LAYERS"
    HEADS = "HEADS"
    DROPOUT = "DROPOUT"
    SPATIAL_BIAS = "SPATIAL_BIAS"
    CENTRALITY = "CENTRALITY"
    MOBILITY_BIAS = "MOBILITY_BIAS"
    NEIGHBOURS = "NEIGHBOURS"
    KNN = "KNN"
    EPOCHS = "EPOCHS"
    LEARNING_RATE = "LEARNING_RATE"
    WEIGHT_DECAY = "WEIGHT_DECAY"
    PATIENCE = "PATIENCE"
    THREADS = "THREADS"
    DEVICE = "DEVICE"
    SEED = "SEED"
    RESTARTS = "RESTARTS"
    VIEW_WEIGHTS = "VIEW_WEIGHTS"
    SPARSE_RECIPE = "SPARSE_RECIPE"
    ATTENTION = "ATTENTION"
    OUTPUT = "OUTPUT"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_LINKS = "OUTPUT_LINKS"
    LINKS_PER_REGION = "LINKS_PER_REGION"
    # numeric/string outputs
    REGIONS_OUT = "REGIONS"
    EPOCHS_RUN = "EPOCHS_RUN"
    DEVICE_OUT = "DEVICE"
    TRAIN_SECONDS = "TRAIN_SECONDS"
    EMBEDDING_DIM = "EMBEDDING_DIM"
    DEVICE_REASON = "DEVICE_REASON"

    def name(self):
        return "train_regions"

    def displayName(self):  # noqa: N802
        return self.tr("1. Train region embeddings (SREL)")

    def shortDescription(self):  # noqa: N802
        return self.tr("Learns an embedding per region from POIs, mobility and land use (no labels) and "
                       "writes emb_000... fields plus a reusable model folder.")

    def initAlgorithm(self, config=None):  # noqa: N802
        P, F = QgsProcessingParameterFeatureSource, QgsProcessingParameterField
        self.addParameter(P(self.REGIONS, self.tr("Regions (polygons)"), [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(F(self.REGION_ID_FIELD, self.tr("Region id field (empty: feature ids)"),
                            parentLayerParameterName=self.REGIONS, optional=True))
        self.addParameter(advanced(F(self.REGION_NAME_FIELD, self.tr("Region name field (for descriptions)"),
                                     parentLayerParameterName=self.REGIONS, optional=True)))
        self.addParameter(advanced(F(self.TEXT_FIELDS, self.tr("Text fields describing regions (names, zoning, notes)"),
                                     parentLayerParameterName=self.REGIONS, allowMultiple=True, optional=True)))
        add_view_parameters(self, self.REGIONS)     # every registered view's inputs (POIS, LANDUSE, MOBILITY, ...)
        self.addParameter(advanced(QgsProcessingParameterCrs(
            self.DISTANCE_CRS, self.tr("Metric CRS for distances and areas (empty: UTM zone of the layer)"),
            optional=True)))
        N = QgsProcessingParameterNumber
        d = DEFAULTS
        self.addParameter(advanced(N(self.EMBED_DIM, self.tr("Embedding size"), N.Integer, d.embed_dim,
                                     minValue=2, maxValue=4096)))
        self.addParameter(advanced(N(self.HIDDEN_DIM, self.tr("Hidden size (divisible by heads)"), N.Integer,
                                     d.hidden_dim, minValue=4, maxValue=4096)))
        self.addParameter(advanced(N(self.LAYERS, self.tr("Graphormer layers"), N.Integer, d.layers,
                                     minValue=0, maxValue=16)))
        self.addParameter(advanced(N(self.HEADS, self.tr("Attention heads"), N.Integer, d.heads,
                                     minValue=1, maxValue=64)))
        self.addParameter(advanced(N(self.DROPOUT, self.tr("Dropout"), N.Double, d.dropout,
                                     minValue=0.0, maxValue=0.95)))
        self.addParameter(enum_param(self.SPATIAL_BIAS, self.tr("Spatial encoding of distances"), SPATIAL_BIASES,
                                     d.spatial_bias, advanced=True))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.CENTRALITY, self.tr("Centrality encoding (degree, mobility strength)"), d.centrality)))
        self.addParameter(advanced(QgsProcessingParameterBoolean(
            self.MOBILITY_BIAS, self.tr("OD flow as attention bias"), d.mobility_bias)))
        self.addParameter(enum_param(self.ATTENTION, self.tr("Attention across regions"), ATTENTION_MODES, d.attention,
                                     advanced=True))
        self.addParameter(enum_param(self.NEIGHBOURS, self.tr("Neighbour graph"), NEIGHBOUR_MODES, d.neighbours,
                                     advanced=True))
        self.addParameter(advanced(N(self.KNN, self.tr("Nearest neighbours (knn graph)"), N.Integer, d.knn,
                                     minValue=1, maxValue=100)))
        self.addParameter(advanced(N(self.EPOCHS, self.tr("Maximum epochs"), N.Integer, d.epochs,
                                     minValue=1, maxValue=100000)))
        self.addParameter(advanced(N(self.LEARNING_RATE, self.tr("Learning rate"), N.Double, d.lr,
                                     minValue=1e-7, maxValue=1.0)))
        self.addParameter(advanced(N(self.WEIGHT_DECAY, self.tr("Weight decay"), N.Double, d.weight_decay,
                                     minValue=0.0, maxValue=1.0)))
        self.addParameter(advanced(N(self.PATIENCE, self.tr("Early-stop patience (epochs)"), N.Integer,
                                     d.patience, minValue=1, maxValue=100000)))
        self.addParameter(advanced(N(self.THREADS, self.tr("CPU threads (0: one for small layers, else every core)"), N.Integer,
                                     d.threads, minValue=0, maxValue=1024)))
        self.addParameter(enum_param(self.DEVICE, self.tr("Device"), DEVICES, d.device))
        self.addParameter(N(self.SEED, self.tr("Random seed"), N.Integer, d.seed, minValue=0))
        self.addParameter(advanced(N(self.RESTARTS, self.tr("Restarts combined (0: 4 up to 500 regions, else 1)"),
                                     N.Integer, d.restarts, minValue=0, maxValue=32)))
        self.addParameter(advanced(QgsProcessingParameterString(
            self.VIEW_WEIGHTS, self.tr("Loss weight per view"),
            defaultValue="", optional=True)))
        self.addParameter(enum_param(self.SPARSE_RECIPE, self.tr("Training recipe for sparse POIs"), SPARSE_RECIPES,
                                     d.sparse_recipe, advanced=True))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Region embeddings"),
                                                            QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_MODEL, self.tr("Model folder")))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT_LINKS, self.tr("Attention links"),
                                                            QgsProcessing.TypeVectorLine, optional=True,
                                                            createByDefault=False))
        self.addParameter(N(self.LINKS_PER_REGION, self.tr("Links per region"), N.Integer, 5, minValue=1,
                            maxValue=50))
        self.addOutput(QgsProcessingOutputNumber(self.REGIONS_OUT, self.tr("Number of regions")))
        self.addOutput(QgsProcessingOutputNumber(self.EPOCHS_RUN, self.tr("Epochs run")))
        self.addOutput(QgsProcessingOutputString(self.DEVICE_OUT, self.tr("Device used")))
        self.addOutput(QgsProcessingOutputNumber(self.TRAIN_SECONDS, self.tr("Training time (s)")))
        self.addOutput(QgsProcessingOutputNumber(self.EMBEDDING_DIM, self.tr("Embedding size")))
        self.addOutput(QgsProcessingOutputString(self.DEVICE_REASON, self.tr("Why this device was chosen")))

    # -- parsing -------------------------------------------------------------------------------

    def srel_config(self, parameters, context) -> SrelConfig:
        i = lambda k: self.parameterAsInt(parameters, k, context)  # noqa: E731
        f = lambda k: self.parameterAsDouble(parameters, k, context)  # noqa: E731
        return DEFAULTS.replace(
            embed_dim=i(self.EMBED_DIM), hidden_dim=i(self.HIDDEN_DIM), layers=i(self.LAYERS), heads=i(self.HEADS),
            dropout=f(self.DROPOUT), spatial_bias=self.parameterAsEnumString(parameters, self.SPATIAL_BIAS, context),
            centrality=self.parameterAsBoolean(parameters, self.CENTRALITY, context),
            mobility_bias=self.parameterAsBoolean(parameters, self.MOBILITY_BIAS, context),
            neighbours=self.parameterAsEnumString(parameters, self.NEIGHBOURS, context), knn=i(self.KNN),
            epochs=i(self.EPOCHS), lr=f(self.LEARNING_RATE), weight_decay=f(self.WEIGHT_DECAY),
            patience=i(self.PATIENCE), threads=i(self.THREADS), seed=i(self.SEED),
            restarts=i(self.RESTARTS), device=self.parameterAsEnumString(parameters, self.DEVICE, context),
            attention=self.parameterAsEnumString(parameters, self.ATTENTION, context),
            sparse_recipe=self.parameterAsEnumString(parameters, self.SPARSE_RECIPE, context),
            view_weights=parse_view_weights(self.parameterAsString(parameters, self.VIEW_WEIGHTS, context)))

    def view_inputs(self, parameters, context) -> spatial_join.ViewInputs:
        return spatial_join.ViewInputs(view_values(self, parameters, context))

    def read_data(self, parameters, context, feedback, start=0.0, end=20.0):
        source = self.parameterAsSource(parameters, self.REGIONS, context)
        if source is None:
            from qgis.core import QgsProcessingException

            raise QgsProcessingException(self.invalidSourceError(parameters, self.REGIONS))
        crs = self.parameterAsCrs(parameters, self.DISTANCE_CRS, context)
        reg = regions.read_regions(source, self.parameterAsString(parameters, self.REGION_ID_FIELD, context),
                                  context, feedback, distance_crs=crs,
                                  name_field=self.parameterAsString(parameters, self.REGION_NAME_FIELD, context),
                                  start=start, end=start + (end - start) / 4)
        inputs = self.view_inputs(parameters, context)
        for name in self.parameterAsFields(parameters, self.TEXT_FIELDS, context):
            regions.field_or_fail_regions(reg, name, "TEXT_FIELDS")
            inputs.texts[name] = np.asarray(["" if v is None else str(v) for v in reg.column(name)], dtype=object)
        data = spatial_join.build_region_data(reg, inputs, context, feedback, start=start + (end - start) / 4,
                                              end=end)
        return reg, data

    def model_folder(self, parameters, context, feedback) -> str:
        """OUTPUT_MODEL; left temporary (the default), it goes next to a file OUTPUT, named after it, so the
        model that 'Predict a region attribute' needs survives closing QGIS."""
        import os

        from qgis.core import QgsProcessingUtils

        from .base import local_path

        model_dir = self.parameterAsString(parameters, self.OUTPUT_MODEL, context)
        temp = os.path.realpath(QgsProcessingUtils.tempFolder())
        if not os.path.realpath(model_dir).startswith(temp + os.sep):
            return model_dir
        out = local_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        if out and not os.path.realpath(out).startswith(temp + os.sep):
            chosen = os.path.join(os.path.dirname(out), os.path.splitext(os.path.basename(out))[0] + "_model")
            feedback.pushInfo(f"Model folder: {chosen} (next to the output layer; OUTPUT_MODEL was left "
                              "temporary).")
            return chosen
        feedback.pushWarning(f"The model folder {model_dir} is temporary: QGIS deletes it when it closes, and "
                             "'Predict a region attribute' needs it. Choose a folder for OUTPUT_MODEL to keep it.")
        return model_dir

    # -- run -----------------------------------------------------------------------------------

    def run(self, parameters, context, feedback):
        from topt_core.device import last_threads, resolve_device
        from topt_core.files import atomic_folder
        from topt_core.progress import StageReporter
        from topt_core.srel import save_model, train_srel

        config = self.srel_config(parameters, context)
        choice = resolve_device(config.device)
        feedback.pushInfo(f"Device: {choice.device} ({choice.reason}).")
        feedback.setProgressText(self.tr("Reading layers"))
        reg, data = self.read_data(parameters, context, feedback, 0.0, 15.0)
        feedback.pushInfo(f"{data.n} regions, views: {', '.join(data.views())}; "
                          f"{data.adjacency.shape[1] // 2} touching pairs.")
        feedback.setProgressText(self.tr("Training SREL"))
        reporter = FeedbackReporter(feedback)
        res = train_srel(data, config, StageReporter(reporter, 15.0, 92.0), device=choice)
        if choice.device == "cpu" and last_threads() is not None:
            feedback.pushInfo(f"SREL CPU threads: {last_threads()}.")
        emb = res.embeddings
        feedback.setProgressText(self.tr("Reading the attention links"))
        links = self.links(res.model, data, parameters, context, feedback)
        feedback.setProgressText(self.tr("Writing outputs"))
        from topt_core.progress import check_canceled

        check_canceled(reporter)
        model_dir = self.model_folder(parameters, context, feedback)
        names = [f"emb_{k:03d}" for k in range(emb.shape[1])]

        # model into a temporary folder, then the layer; the model folder is moved into place only when
        # both succeeded, so a failed or cancelled write leaves neither (hostile matrix, issue 6)
        new = [sinks.double_field(n) for n in names]
        values = emb.astype(float).tolist()
        if links is not None:
            new += [sinks.double_field("attn_in"), sinks.double_field("attn_dist_m"), sinks.double_field("centrality")]
            values = [v + [float(a), float(b), float(c)] for v, a, b, c in
                      zip(values, links.attn_in, links.attn_dist_m, links.centrality)]
        with atomic_folder(model_dir) as tmp:
            save_model(res, tmp, data=data)
            dest = sinks.write_sink(self, parameters, context, feedback, self.OUTPUT, reg.features, reg.fields,
                                    new, values, reg.wkb_type, reg.source_crs)
            links_dest = None
            if links is not None and self.wants(parameters, self.OUTPUT_LINKS):
                links_dest = sinks.write_lines(self, parameters, context, feedback, self.OUTPUT_LINKS, reg,
                                               links, data.region_ids)
        if links is not None:
            styles.style_output(context, dest, "attn_in", "graduated")
        if links_dest:
            styles.style_output(context, links_dest, "weight", "links")
            k = self.parameterAsInt(parameters, self.LINKS_PER_REGION, context)
            feedback.pushInfo(f"Attention links: {len(links.weight)} lines, the {k} strongest partners of each "
                              f"region ({links.mode} attention, weights averaged {links.averaged}).")
        feedback.setProgress(100.0)
        out = {self.OUTPUT: dest, self.OUTPUT_MODEL: model_dir, self.REGIONS_OUT: data.n,
                self.EPOCHS_RUN: res.epochs_run, self.DEVICE_OUT: str(res.device.device if res.device else choice.device),
                self.TRAIN_SECONDS: round(float(res.seconds), 3), self.EMBEDDING_DIM: int(emb.shape[1]),
                self.DEVICE_REASON: (res.device or choice).reason}
        if links_dest:
            out[self.OUTPUT_LINKS] = links_dest
        return out

    def links(self, model, data, parameters, context, feedback):
        """Attention links and influence fields of the trained model (srel/links.py), or None without layers."""
        from topt_core.srel.links import attention_links

        if model.config.layers == 0:
            feedback.pushInfo("The model has no attention layers (LAYERS=0): no links or influence fields.")
            return None
        return attention_links(model, data, self.parameterAsInt(parameters, self.LINKS_PER_REGION, context))
