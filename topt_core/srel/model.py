"""The SREL network: per-view encoders, view fusion, Graphormer fusion across regions.

``SrelModel`` carries everything needed to embed a dataset of the same
schema: the weights, the preprocessing statistics (as buffers, so they travel
in ``model.safetensors``), the config and the input schema. The tensors it
reads (``SrelInputs``) are built by ``srel/inputs.py``; this module holds
only ``nn.Module``s.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import SrelConfig
from .attention import AttentionContext, RegionAttention
from .encodings import BucketSpatialBias, CentralityEncoding, GaussianSpatialBias, MobilityBias
from .inputs import SrelInputs, model_views, stat_shapes


def _key(name: str) -> str:
    return name.replace(".", "__")


def reset_in_build_order(module: nn.Module) -> None:
    """``reset_parameters()`` of ``module``'s children in the order they were registered, which is the
    order they were built in and drew their initial weights; containers (ModuleDict, ModuleList,
    Sequential) are walked. After the same ``torch.manual_seed`` it gives back the weights of a build."""
    for child in module.children():
        if hasattr(child, "reset_parameters"):
            child.reset_parameters()
        else:
            reset_in_build_order(child)


class GraphormerLayer(nn.Module):
    """Pre-LN transformer layer: x + Attn(LN(x), bias); x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = RegionAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        reset_in_build_order(self)

    def forward(self, x, ctx):
        x = x + self.drop(self.attn(self.ln1(x), ctx))
        return x + self.drop(self.ffn(self.ln2(x)))


class SrelModel(nn.Module):
    """Stage-1 model. Build with ``SrelModel(config, schema, stats)``; stats=None gives placeholders to load into."""

    def __init__(self, config: SrelConfig, schema: dict, stats: dict | None = None):
        super().__init__()
        self.config, self.schema = config, dict(schema)
        self.view_units = model_views(schema)
        self.views = [v.name for v in self.view_units]
        has_mob = "mobility" in self.views
        c, h, d = config, config.hidden_dim, config.embed_dim
        for name, shape in stat_shapes(schema, config).items():
            value = stats[name] if stats is not None else np.zeros(shape, np.float32)
            value = np.asarray(value, dtype=np.float32).reshape(shape)
            self.register_buffer("prep__" + _key(name), torch.from_numpy(value.copy()))
        u_max = float(stats["u_max"][0]) if stats is not None else 4.0

        self.encoders = nn.ModuleDict({
            v: nn.Sequential(nn.Linear(schema["dims"][v], h), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(h, h))
            for v in self.views})
        if len(self.views) > 1 and c.view_fusion == "concat":     # the views side by side, one linear map
            self.view_mix = nn.Linear(len(self.views) * h, h)
        elif len(self.views) > 1:                                   # softmax-weighted sum over the views
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
        self.layers = nn.ModuleList(GraphormerLayer(h, c.heads, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(h) if c.final_norm else nn.Identity()
        self.out = nn.Linear(h, d)
        # table views' decoders first, then the OD views' (the creation order fixes the initial weights)
        dec = [k for kind in ("table", "od") for v in self.view_units if v.kind == kind for k in v.ssl_decoders]
        self.decoders = nn.ModuleDict({k: nn.Linear(d, d) for k in dec})
        if c.feature_weight > 0 or c.mask_weight > 0:
            self.feature_decoders = nn.ModuleDict({v: nn.Linear(d, schema["dims"][v]) for v in self.views})
        if c.contrast_weight > 0:               # projection head of the contrastive objective (GRACE)
            self.contrast_head = nn.Sequential(nn.Linear(d, d), nn.ELU(), nn.Linear(d, d))

    def reset_parameters(self) -> None:
        """Initial weights again, drawn in the order of a build (the statistics buffers are kept)."""
        reset_in_build_order(self)

    # -- preprocessing statistics stored as buffers -------------------------------------------
    def stat(self, name: str) -> np.ndarray:
        return getattr(self, "prep__" + _key(name)).detach().cpu().numpy()

    def stats(self) -> dict:
        return {k[len("prep__"):].replace("__", "."): v.detach().cpu().numpy()
                for k, v in self.named_buffers() if k.startswith("prep__")}

    # -- forward ---------------------------------------------------------------------------------
    def pair_bias(self, pairs):
        """Sum of the pair biases, (..., heads) over the pairs in ``pairs``; None without any."""
        bias = None
        for module in (self.spatial, self.mobility_bias):
            if module is not None:
                b = module(pairs)
                bias = b if bias is None else bias + b
        return bias

    def forward(self, inp: SrelInputs) -> torch.Tensor:
        hs = [self.encoders[v](inp.features[v]) for v in self.views]
        if len(hs) == 1:
            x = hs[0]
        elif hasattr(self, "view_mix"):
            x = self.view_mix(torch.cat(hs, dim=1))
        else:
            stack = torch.stack(hs)                                        # (V, N, H)
            alpha = torch.softmax(self.view_score(torch.tanh(self.view_proj(stack))), dim=0)
            x = (alpha * stack).sum(0)
        if self.centrality is not None:
            x = x + self.centrality(inp.degree, inp.strength)
        ctx = self.attention_context(inp)
        for layer in self.layers:
            x = layer(x, ctx)
        return self.out(self.norm(x))

    def attention_context(self, inp: SrelInputs) -> AttentionContext:
        """Which pairs attend and their biases, once per forward pass (shared by the layers): the inputs' mode."""
        return inp.mode.context(self, inp)


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

    def reset_parameters(self) -> None:
        """Every member's initial weights, drawn one member after the other as ``SrelEnsemble(config, schema)``
        builds them (``train_srel`` seeds each restart on its own, ``srel.determinism.member_seed``); the
        projection is kept."""
        reset_in_build_order(self)

    @property
    def views(self):
        return self.members[0].views

    @property
    def mobility_bias(self):
        return self.members[0].mobility_bias

    def stats(self) -> dict:
        return self.members[0].stats()

    def concat(self, inp: SrelInputs) -> torch.Tensor:
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

    def forward(self, inp: SrelInputs) -> torch.Tensor:
        z = self.concat(inp) - self.pca_mean
        return (z @ self.pca_components.T) / float(np.sqrt(self.config.restarts))


def build_model(config: SrelConfig, schema: dict, stats: dict | None = None):
    """``SrelModel`` for restarts=1 (unchanged format), else ``SrelEnsemble``."""
    return SrelModel(config, schema, stats) if config.restarts == 1 else SrelEnsemble(config, schema, stats)
