"""The SREL network: per-view encoders, view fusion, Graphormer fusion across regions.

``SrelModel`` carries everything needed to embed a dataset of the same
schema: the weights, the preprocessing statistics (as buffers, so they travel
in ``model.safetensors``), the config and the input schema. ``prepare_inputs``
turns a ``RegionData`` into the tensors the forward pass needs.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import spatial
from ..config import SrelConfig
from ..errors import ToptDataError
from . import views as V
from .attention import RegionAttention, dense_attention_bytes
from .encodings import BucketSpatialBias, CentralityEncoding, GaussianSpatialBias, MobilityBias

VIEW_ORDER = ("poi", "landuse", "mobility", "extra")


def _key(name: str) -> str:
    return name.replace(".", "__")


class GraphormerLayer(nn.Module):
    """Pre-LN transformer layer: x + Attn(LN(x), bias); x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float, mode: str):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = RegionAttention(dim, heads, dropout, mode)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias):
        x = x + self.drop(self.attn(self.ln1(x), bias))
        return x + self.drop(self.ffn(self.ln2(x)))


class SrelModel(nn.Module):
    """Stage-1 model. Build with ``SrelModel(config, schema, stats)``; stats=None gives placeholders to load into."""

    def __init__(self, config: SrelConfig, schema: dict, stats: dict | None = None):
        super().__init__()
        self.config, self.schema = config, dict(schema)
        self.views = [v for v in VIEW_ORDER if v in schema["views"]]
        has_mob = "mobility" in self.views
        c, h, d = config, config.hidden_dim, config.embed_dim
        shapes = dict(V.stat_shapes(schema, config))
        shapes["spacing"] = (1,)
        shapes["u_max"] = (1,)
        if has_mob:
            shapes["strength.edges"] = (2, c.strength_buckets - 1)
            shapes["flow.scale"] = (1,)
        for name, shape in shapes.items():
            value = stats[name] if stats is not None else np.zeros(shape, np.float32)
            value = np.asarray(value, dtype=np.float32).reshape(shape)
            self.register_buffer("prep__" + _key(name), torch.from_numpy(value.copy()))
        u_max = float(stats["u_max"][0]) if stats is not None else 4.0

        self.encoders = nn.ModuleDict({
            v: nn.Sequential(nn.Linear(schema["dims"][v], h), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(h, h))
            for v in self.views})
        if len(self.views) > 1:
            self.view_proj = nn.Linear(h, h)
            self.view_score = nn.Linear(h, 1, bias=False)
        self.centrality = (CentralityEncoding(h, c.max_degree, c.strength_buckets, has_mob)
                           if c.centrality else None)
        if c.spatial_bias == "gaussian":
            self.spatial = GaussianSpatialBias(c.heads, c.distance_kernels, u_max)
        elif c.spatial_bias == "bucket":
            self.spatial = BucketSpatialBias(c.heads, c.distance_buckets, c.max_hops, u_max)
        else:
            self.spatial = None
        self.mobility_bias = MobilityBias(c.heads) if (c.mobility_bias and has_mob) else None
        self.layers = nn.ModuleList(GraphormerLayer(h, c.heads, c.dropout, c.attention) for _ in range(c.layers))
        self.norm = nn.LayerNorm(h) if c.final_norm else nn.Identity()
        self.out = nn.Linear(h, d)
        dec = [v for v in self.views if v != "mobility"] + (["source", "target"] if has_mob else [])
        self.decoders = nn.ModuleDict({k: nn.Linear(d, d) for k in dec})
        if c.feature_weight > 0:
            self.feature_decoders = nn.ModuleDict({v: nn.Linear(d, schema["dims"][v]) for v in self.views})

    # -- preprocessing statistics stored as buffers -------------------------------------------
    def stat(self, name: str) -> np.ndarray:
        return getattr(self, "prep__" + _key(name)).detach().cpu().numpy()

    def stats(self) -> dict:
        return {k[len("prep__"):].replace("__", "."): v.detach().cpu().numpy()
                for k, v in self.named_buffers() if k.startswith("prep__")}

    # -- forward ---------------------------------------------------------------------------------
    def pair_bias(self, inp: dict):
        bias = None
        if self.spatial is not None:
            bias = (self.spatial(inp["u"]) if self.config.spatial_bias == "gaussian"
                    else self.spatial(inp["u"], inp["hops"]))
        if self.mobility_bias is not None:
            b = self.mobility_bias(inp["flow"])
            bias = b if bias is None else bias + b
        return bias

    def forward(self, inp: dict) -> torch.Tensor:
        hs = [self.encoders[v](inp["features"][v]) for v in self.views]
        if len(hs) == 1:
            x = hs[0]
        else:
            stack = torch.stack(hs)                                        # (V, N, H)
            alpha = torch.softmax(self.view_score(torch.tanh(self.view_proj(stack))), dim=0)
            x = (alpha * stack).sum(0)
        if self.centrality is not None:
            x = x + self.centrality(inp["degree"], inp.get("strength"))
        bias = self.pair_bias(inp)
        for layer in self.layers:
            x = layer(x, bias)
        return self.out(self.norm(x))


class SrelEnsemble(nn.Module):
    """``config.restarts`` SREL models trained independently (label-free) on the same data.

    The embedding concatenates the members' outputs, projects it on the top
    ``embed_dim`` principal axes of the training embeddings (mean and axes
    stored as buffers, so the projection travels in ``model.safetensors``) and
    divides by sqrt(restarts) so its scale matches one model's. Rows beyond the
    rank of the training embeddings are zero.
    """

    def __init__(self, config: SrelConfig, schema: dict, stats: dict | None = None, members=None):
        super().__init__()
        self.config, self.schema = config, dict(schema)
        member = config.replace(restarts=1)
        if members is None:
            members = [SrelModel(member, schema, stats) for _ in range(config.restarts)]
        if len(members) != config.restarts:
            raise ValueError(f"{len(members)} members for restarts={config.restarts}")
        self.members = nn.ModuleList(members)
        width = config.restarts * config.embed_dim
        self.register_buffer("pca_mean", torch.zeros(width))
        self.register_buffer("pca_components", torch.zeros(config.embed_dim, width))

    @property
    def views(self):
        return self.members[0].views

    @property
    def mobility_bias(self):
        return self.members[0].mobility_bias

    def stats(self) -> dict:
        return self.members[0].stats()

    def concat(self, inp: dict) -> torch.Tensor:
        return torch.cat([m(inp) for m in self.members], dim=1)

    def fit_projection(self, z: np.ndarray) -> None:
        """Fit the PCA on the concatenated training embeddings ``z`` (N x restarts*embed_dim); no labels."""
        z = np.asarray(z, dtype=np.float64)
        mean = z.mean(0)
        _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
        k = min(self.config.embed_dim, vt.shape[0])
        comps = np.zeros((self.config.embed_dim, z.shape[1]))
        comps[:k] = vt[:k]
        signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])   # deterministic signs
        comps *= np.where(signs == 0, 1.0, signs)[:, None]
        self.pca_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.pca_components.copy_(torch.from_numpy(comps.astype(np.float32)))

    def forward(self, inp: dict) -> torch.Tensor:
        z = self.concat(inp) - self.pca_mean
        return (z @ self.pca_components.T) / float(np.sqrt(self.config.restarts))


def build_model(config: SrelConfig, schema: dict, stats: dict | None = None):
    """``SrelModel`` for restarts=1 (unchanged format), else ``SrelEnsemble``."""
    return SrelModel(config, schema, stats) if config.restarts == 1 else SrelEnsemble(config, schema, stats)


# -- building inputs ----------------------------------------------------------------------------

def input_schema(data, config: SrelConfig) -> dict:
    views = [v for v in VIEW_ORDER if v in data.views()]
    schema = {"views": views, "dims": {v: V.raw_dim(data, v, config) for v in views},
              "poi_categories": list(data.poi_categories) if "poi" in views else [],
              "landuse_classes": list(data.landuse_classes) if "landuse" in views else [],
              "extra_names": list(data.extra_names) if "extra" in views else [],
              "n_regions": int(data.n), "crs": str(data.crs), "region_ids": None}
    if "mobility" in views and config.mobility_features == "rows":
        schema["region_ids"] = [str(x) for x in data.region_ids]
    return schema


def check_schema(schema: dict, data, config: SrelConfig) -> None:
    """Refuse data whose views or columns differ from what the model was trained on."""
    got = input_schema(data, config)
    if got["views"] != schema["views"]:
        raise ToptDataError(f"The model was trained on views {schema['views']} but the data has {got['views']}; "
                            "provide the same inputs (POI, land use, mobility, extra fields) as for training.")
    for key, what in (("poi_categories", "POI categories"), ("landuse_classes", "land-use classes"),
                      ("extra_names", "extra fields")):
        if got[key] != schema[key]:
            raise ToptDataError(f"The data's {what} {got[key][:8]} differ from the model's {schema[key][:8]}; "
                                f"use the same {what} in the same order as for training.")
    if schema.get("region_ids") is not None and got["region_ids"] != schema["region_ids"]:
        raise ToptDataError("This model encodes OD rows (mobility_features='rows') and is tied to the "
                            f"{len(schema['region_ids'])} training regions, but the data has other regions; "
                            "embed the training regions, or retrain with mobility_features='summary'.")
    if got["dims"] != schema["dims"]:
        raise ToptDataError(f"The data's input widths {got['dims']} differ from the model's {schema['dims']}; "
                            "use data with the same columns as for training.")


def _strength(data, fence):
    m = V.clipped_od(data.mobility, fence)
    return np.log1p(np.stack([np.asarray(m.sum(1)).ravel(), np.asarray(m.sum(0)).ravel()], axis=1))


def _log_flow(data, fence):
    m = V.clipped_od(data.mobility, fence)
    m = (m + m.T).toarray()
    return np.log1p(m)


def fit_preprocessing(data, config: SrelConfig) -> dict:
    """All statistics fitted on the training data (stored as model buffers)."""
    spacing = spatial.distance_scale(data.centroids)
    dist_units = spatial.pairwise_distances(data.centroids, np.float64) / spacing
    u = np.log1p(dist_units)
    stats = V.fit_stats(data, config, dist_units)
    stats["spacing"] = np.array([spacing], np.float32)
    stats["u_max"] = np.array([max(float(u.max()), 1.0)], np.float32)
    if "mobility" in data.views():
        fence = float(stats["mobility.fence"][0])
        s = _strength(data, fence)
        qs = np.linspace(0, 100, config.strength_buckets + 1)[1:-1]
        stats["strength.edges"] = np.percentile(s, qs, axis=0).T.astype(np.float32)
        lf = _log_flow(data, fence)
        nz = lf[lf > 0]
        stats["flow.scale"] = np.array([float(nz.std()) if nz.size and nz.std() > 0 else 1.0], np.float32)
    return stats


def prepare_inputs(model, data, device="cpu") -> dict:
    """RegionData -> dict of tensors for ``model.forward`` (uses the model's stored statistics)."""
    cfg = model.config
    stats = model.stats()
    dist = spatial.pairwise_distances(data.centroids, np.float64)
    dist_units = dist / float(stats["spacing"][0])
    inp: dict = {"features": {k: torch.from_numpy(v).to(device)
                              for k, v in V.features(data, stats, cfg, dist_units).items()}}
    edges = spatial.neighbour_edges(data.centroids, data.adjacency, cfg.neighbours, cfg.knn)
    inp["degree"] = torch.from_numpy(spatial.degrees(edges, data.n)).to(device)
    inp["u"] = torch.from_numpy(np.log1p(dist_units).astype(np.float32)).to(device)
    if cfg.spatial_bias == "bucket":
        inp["hops"] = torch.from_numpy(spatial.hop_counts(edges, data.n, cfg.max_hops).astype(np.int64)).to(device)
    if "mobility" in model.views:
        fence = float(stats["mobility.fence"][0])
        s = _strength(data, fence)
        e = stats["strength.edges"]
        b = np.stack([np.searchsorted(e[0], s[:, 0], side="right"),
                      np.searchsorted(e[1], s[:, 1], side="right")], axis=1)
        inp["strength"] = torch.from_numpy(b.astype(np.int64)).to(device)
        if model.mobility_bias is not None:
            flow = _log_flow(data, fence) / float(stats["flow.scale"][0])
            inp["flow"] = torch.from_numpy(flow.astype(np.float32)).to(device)
    return inp


def estimate_dense_memory(n_regions: int, config: SrelConfig) -> int:
    """Rough peak bytes of one dense training step for N regions (dominated by N² terms)."""
    n = int(n_regions)
    c = config
    attn = dense_attention_bytes(n, c.heads, c.layers)
    pair = 4 * n * n * (c.heads * 3                      # pair bias, its grad, per-head copies
                        + (c.distance_kernels * 3 if c.spatial_bias == "gaussian" else 0)
                        + (4 if c.spatial_bias == "bucket" else 0)
                        + 12)                            # distances, flow, OD target, 2 softmax + grads, cosines
    rows = 4 * n * 2 * n * 3 if c.mobility_features == "rows" else 0
    nodes = 4 * n * (c.hidden_dim * (8 + 6 * c.layers) + c.embed_dim * 12)
    params = 4 * 3 * (c.hidden_dim * c.hidden_dim * (4 + 12 * c.layers) + c.embed_dim * c.embed_dim * 6)
    # restarts train one after another: only the finished members' weights and outputs add up
    kept = (c.restarts - 1) * (params // 3 + 4 * n * c.embed_dim * 2)
    return int(attn + pair + rows + nodes + params + kept + 200 * 2 ** 20)
