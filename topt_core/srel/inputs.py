"""From ``RegionData`` to the typed tensors the SREL model reads (the collator, kept out of the model).

* ``fit_preprocessing``: every statistic fitted on the training data (each view's scaling,
  the typical region spacing, the largest distance); stored as model buffers so ``embed``
  reproduces the preprocessing on new data.
* ``input_schema`` / ``check_schema``: which views and columns a model was trained on.
* ``build_inputs``: node features per view, centrality inputs and, from the attention mode
  (``srel/modes/``), the pair features (``PairFeatures``) that the attention biases read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import spatial, views
from ..config import SrelConfig
from ..errors import ToptDataError
from ..views import mobility as mob


@dataclass
class PairFeatures:
    """What the pair-bias modules read, for a set of pairs: all (N, N) pairs, edges (E,) or anchors (N, M)."""

    u: torch.Tensor | None = None        # log1p(distance / typical spacing)
    hops: torch.Tensor | None = None     # hop count in the neighbour graph (bucket bias)
    flow: torch.Tensor | None = None     # scaled log flow between the two, both ways
    u_max: float = 4.0                   # the training data's largest u (the spatial bias's grid)
    interp: tuple | None = None          # the spatial bias's fixed interpolation weights (built on first use)


@dataclass
class SrelInputs:
    """Everything ``SrelModel.forward`` reads. ``mode`` (``srel/modes/``) chose the pairs that attend:
    ``pairs`` holds their features (all N x N pairs in the dense mode, the local edges in the sparse
    mode) and ``layout`` whatever else the mode needs (the sparse mode's edges and anchors)."""

    features: dict = field(default_factory=dict)   # view name -> (N, F) float32
    degree: torch.Tensor | None = None             # (N,) neighbours in the neighbour graph
    strength: torch.Tensor | None = None           # (N, 2) out/in mobility strength buckets
    pairs: PairFeatures = field(default_factory=PairFeatures)
    mode: object = None                            # the ``modes.AttentionMode`` these inputs were built for
    layout: object = None                          # the mode's own pair layout (None in the dense mode)

    @property
    def n(self) -> int:
        return int(self.degree.shape[0])


def model_views(schema: dict) -> list:
    """The registry views a schema names, in registry order."""
    return [v for v in views.REGISTRY if v.name in schema["views"]]


def input_schema(data, config: SrelConfig) -> dict:
    present = views.model_inputs(data, config)
    schema = {"views": [v.name for v in present], "dims": {v.name: v.feature_dim(data, config) for v in present}}
    for v in views.REGISTRY:
        for key, value in v.schema(data).items():
            schema[key] = list(value) if v in present else []
    schema.update({"n_regions": int(data.n), "crs": str(data.crs), "region_ids": None})
    if any(v.name == "mobility" for v in present) and config.mobility_features == "rows":
        schema["region_ids"] = [str(x) for x in data.region_ids]
    return schema


def check_schema(schema: dict, data, config: SrelConfig) -> None:
    """Refuse data whose views or columns differ from what the model was trained on."""
    got = input_schema(data, config)
    own = lambda names: [v for v in names if not views.get(v).derived]  # noqa: E731  (derived: recomputed)
    if own(got["views"]) != own(schema["views"]):
        raise ToptDataError(f"The model was trained on views {schema['views']} but the data has {got['views']}; "
                            "provide the same inputs (POI, land use, mobility, extra fields) as for training.")
    for v in model_views(schema):
        v.check(schema, data)
    if schema.get("region_ids") is not None and got["region_ids"] != schema["region_ids"]:
        raise ToptDataError("This model encodes OD rows (mobility_features='rows') and is tied to the "
                            f"{len(schema['region_ids'])} training regions, but the data has other regions; "
                            "embed the training regions, or retrain with mobility_features='summary'.")
    od = [v.name for v in model_views(schema) if v.kind == "od"]
    if any(got["dims"].get(k) != schema["dims"].get(k) for k in od):
        raise ToptDataError(f"The data's input widths {got['dims']} differ from the model's {schema['dims']}; "
                            "use data with the same columns as for training.")


def fit_preprocessing(data, config: SrelConfig) -> dict:
    """All statistics fitted on the training data (stored as model buffers)."""
    spacing = spatial.distance_scale(data.centroids)
    geometry = spatial.PairGeometry(data.centroids, spacing)
    stats = {}
    for view in views.model_inputs(data, config):
        stats.update(view.fit_stats(data, config, geometry))
    stats["spacing"] = np.array([spacing], np.float32)
    u_max = float(np.log1p(spatial.max_distance(data.centroids) / spacing))
    stats["u_max"] = np.array([max(u_max, 1.0)], np.float32)
    return stats


def stat_shapes(schema: dict, config: SrelConfig) -> dict:
    """Shapes of the statistics for an input schema (to rebuild a model before loading weights)."""
    shapes = {}
    for view in model_views(schema):
        shapes.update(view.stat_shapes(schema["dims"][view.name], config))
    shapes["spacing"] = (1,)
    shapes["u_max"] = (1,)
    return shapes


def build_inputs(model, data, device="cpu", mode=None) -> SrelInputs:
    """RegionData -> ``SrelInputs`` for ``model.forward`` (uses the model's stored statistics).

    ``mode``: an attention mode or its name; None resolves the model's ``attention`` setting for this many regions.
    """
    from . import modes

    cfg = model.config
    mode = modes.resolve(cfg, data.n) if mode is None else modes.get(mode)
    stats = model.stats()
    spacing = float(stats["spacing"][0])
    geometry = spatial.PairGeometry(data.centroids, spacing)
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    inp = SrelInputs(features={v.name: to(v.features(data, stats, cfg, geometry, model.schema))
                               for v in model_views(model.schema)}, mode=mode)
    edges = spatial.neighbour_edges(data.centroids, data.adjacency, cfg.neighbours, cfg.knn)
    inp.degree = to(spatial.degrees(edges, data.n))
    inp.pairs.u_max = float(stats["u_max"][0])
    has_mob = "mobility" in model.views
    flow = None
    if has_mob:
        fence, buckets = mob.centrality_inputs(data, stats)
        inp.strength = to(buckets)
        flow = mob.symmetric_flow(data, fence)
    with_flow = has_mob and model.mobility_bias is not None
    mode.pair_inputs(inp, model, data, geometry, edges, flow, with_flow, stats, to)
    return inp
