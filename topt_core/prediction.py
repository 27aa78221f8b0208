"""Stage 2 as a user runs it: the layer's regions matched to a model, their data and embeddings.

Both front doors (``topt:predict_regions`` and ``python -m topt_core predict``) call these, so
they match regions, choose where the descriptions come from and when to embed in one way:

* ``prediction_data``: with a model folder that stores its views, the layer's regions are
  matched to them (``matching.match_regions``) and described from the stored views; otherwise
  (or when not every region matches) from the layer itself (``layer_data``, front-door code).
* ``prediction_embeddings``: the layer's ``emb_*`` fields, else the saved model embeds the
  matched regions.
"""
from __future__ import annotations

from .errors import ToptDataError
from .matching import match_regions
from .progress import StageReporter, ensure_reporter


def prediction_data(columns: dict, feature_ids, model_dir, id_field: str, layer_data, reporter=None):
    """(RegionData for the descriptions, RegionMatch or None).

    ``columns``: field -> values of the layer; ``layer_data(ids)`` builds RegionData from the layer
    itself (its polygons and description fields) for the given ids (None: feature ids).
    """
    from .checkpoint import load_region_data

    reporter = ensure_reporter(reporter)
    stored = load_region_data(model_dir) if model_dir else None
    if model_dir and stored is None:
        reporter.warning(f"The model folder {model_dir} holds no region data; descriptions come from the layer.")
    if stored is None:
        return layer_data(None), None
    match = match_regions(columns, stored.region_ids, id_field, stored.id_field or None, feature_ids)
    if match.rows is None:
        if id_field or match.matched:
            reporter.warning(f"{match.message} Region descriptions come from the layer instead of the model's "
                             "stored views.")
        return layer_data(match.ids if match.ids is not None and len(set(match.ids)) == len(match.ids)
                          else None), match
    reporter.info(match.message)
    data = stored.subset(match.rows)
    reporter.info(f"Region descriptions from the model's stored views ({', '.join(data.views())}).")
    return data, match


def prediction_embeddings(emb, model_dir, data, match, reporter=None, progress=(5.0, 10.0)):
    """The embedding matrix: the layer's fields (``emb``), else the saved model on the matched regions."""
    reporter = ensure_reporter(reporter)
    if emb is not None:
        return emb
    if match is not None and match.rows is not None:
        from .srel import embed, load_model

        reporter.set_text("Embedding regions with the saved model")
        out = embed(load_model(model_dir), data, StageReporter(reporter, *progress))
        reporter.info(f"No emb_* fields in the layer: embedded {data.n} regions with the model in {model_dir}.")
        return out
    raise ToptDataError(
        "The input layer has no emb_* fields and EMBEDDING_FIELDS is empty; use the output of 'Train region "
        "embeddings', choose the embedding fields, or give MODEL (the model folder) with a layer whose region "
        "ids match the model's regions.")
