"""The dense attention mode: every region attends to every region, with exact losses (N x N).

Pair features and biases are (N, N); the similarity losses compare full cosine matrices and the OD
loss normalises over every destination. Memory grows with N², so ``check_memory`` refuses layers
above ``max_dense_regions`` (or what the device holds) with advice.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.nn import functional as F

from ... import spatial
from ...errors import ToptResourceError
from ..attention import AttentionContext, dense_attention_bytes
from .base import AttentionMode, forward_passes, passes_advice


@dataclass
class DenseContext(AttentionContext):
    bias: torch.Tensor | None = None            # (heads, N, N) or None
    mode = "dense"

    def attend(self, layer, x):
        n = x.shape[0]
        q, k, v = layer.qkv(x).view(n, 3, layer.heads, layer.head_dim).permute(1, 2, 0, 3)
        logits = (q @ k.transpose(-1, -2)) * (layer.head_dim ** -0.5)
        if self.bias is not None:
            logits = logits + self.bias
        attn = torch.softmax(logits, dim=-1)
        if layer.keep_attention:
            layer.last_attention = attn.detach().mean(0)                         # (N, N)
        attn = F.dropout(attn, p=layer.dropout, training=layer.training)
        out = (attn @ v).permute(1, 0, 2).reshape(n, -1)
        return layer.proj(out)


def estimate_dense_memory(n_regions: int, config) -> int:
    """Rough peak bytes of one dense training step for N regions (dominated by N² terms)."""
    n = int(n_regions)
    c = config
    attn = dense_attention_bytes(n, c.heads, c.layers)
    bias = 4 * n * n * c.heads * 3                       # pair bias, its grad, per-head copies (each forward pass)
    pair = 4 * n * n * ((c.distance_kernels * 3 if c.spatial_bias == "gaussian" else 0)
                        + (4 if c.spatial_bias == "bucket" else 0)
                        + 12)                            # distances, flow, OD target, 2 softmax + grads, cosines
    rows = 4 * n * 2 * n * 3 if c.mobility_features == "rows" else 0
    nodes = 4 * n * (c.hidden_dim * (8 + 6 * c.layers) + c.embed_dim * 12)
    params = 4 * 3 * (c.hidden_dim * c.hidden_dim * (4 + 12 * c.layers) + c.embed_dim * c.embed_dim * 6)
    # restarts train one after another: only the finished members' weights and outputs add up
    kept = (c.restarts - 1) * (params // 3 + 4 * n * c.embed_dim * 2)
    passes = forward_passes(c)                          # the masked and contrastive passes keep their own graphs
    return int(passes * (attn + bias + nodes) + pair + rows + params + kept + 200 * 2 ** 20)


class DenseMode(AttentionMode):
    name = "dense"
    whole_rows = True

    def auto_reason(self, n, config):
        return f"auto: {n} regions <= {config.auto_sparse_above}"

    def summary(self, n, config, why):
        return f"dense attention over all region pairs ({why})"

    def estimate_memory(self, n, config):
        return estimate_dense_memory(n, config)

    def check_memory(self, n, config, device="cpu"):
        from .. import memory

        need = estimate_dense_memory(n, config)
        advice = ("use ATTENTION=sparse (or auto), which limits attention to neighbours plus anchor clusters, or "
                  "fewer regions (a smaller study area or a coarser grid)") + passes_advice(config)
        if n > config.max_dense_regions:
            raise ToptResourceError(
                f"{n} regions exceed the dense-attention limit of {config.max_dense_regions} "
                f"(about {need / 1e9:.1f} GB needed); {advice}.")
        avail = memory.available_memory(device)
        if avail is not None and need > avail:
            raise ToptResourceError(
                f"Training on {n} regions needs about {need / 1e9:.1f} GB but only {avail / 1e9:.1f} GB is "
                f"available on {device}; {advice}.")
        return need

    # -- inputs and attention --------------------------------------------------------------------
    def pair_inputs(self, inp, model, data, geometry, edges, flow, with_flow, stats, to):
        cfg = model.config
        dist_units = spatial.pairwise_distances(data.centroids, np.float64) / geometry.spacing
        inp.pairs.u = to(np.log1p(dist_units).astype(np.float32))
        if cfg.spatial_bias == "bucket":
            inp.pairs.hops = to(spatial.hop_counts(edges, data.n, cfg.max_hops).astype(np.int64))
        if with_flow:
            log_flow = np.log1p(flow.toarray()) / float(stats["flow.scale"][0])
            inp.pairs.flow = to(log_flow.astype(np.float32))

    def context(self, model, inp):
        bias = model.pair_bias(inp.pairs)
        return DenseContext(bias=None if bias is None else bias.permute(2, 0, 1))   # (heads, N, N)

    # -- losses: exact ---------------------------------------------------------------------------
    def similarity_loss(self, target, config, device):
        from ...objectives import similarity_mse
        from ...views import scaling

        matrix = torch.from_numpy(scaling.cosine_matrix(target.vectors)).to(device)
        if target.mask is None:
            return partial(similarity_mse, target=matrix)
        return partial(similarity_mse, target=matrix, mask=torch.from_numpy(target.mask).to(device))

    def flows_loss(self, target, config, device):
        """The OD weights (winsorised OD / its mean, MVURE/HAFusion) and the constant entropy term."""
        from ...objectives import od_kl

        m = target.flows.toarray()
        mean = m.mean()
        w = (m / (mean if mean > 0 else 1.0)).astype(np.float32)
        p = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
        q = w.T / np.maximum(w.T.sum(1, keepdims=True), 1e-12)
        ent = lambda a, m: float(-(m * np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), 0.0)).sum())  # noqa: E731
        return partial(od_kl, w=torch.from_numpy(w).to(device),
                       entropy=(ent(p, w) + ent(q, w.T)) / max(float(w.sum()), 1e-12))

    # -- interpretation --------------------------------------------------------------------------
    def layer_average(self, maps):
        return torch.stack(maps).mean(0).cpu().numpy()                           # (N, N)

    def links(self, maps, inp, data, k):
        n, c = data.n, np.asarray(data.centroids, dtype=np.float64)
        a = np.mean(maps, 0)                                               # (N, N), rows sum to 1
        d = spatial.pairwise_distances(c, np.float64)
        attn_dist = (a * d).sum(1)
        off = a.copy()
        np.fill_diagonal(off, 0.0)
        attn_in = off.sum(0)
        kk = min(k, n - 1)
        top = np.argsort(-off, axis=1, kind="stable")[:, :kk]
        tgt = np.repeat(np.arange(n), kk)
        src = top.reshape(-1)
        w = off[tgt, src]
        rank = np.tile(np.arange(1, kk + 1), n)
        return tgt, src, w, rank, attn_in, attn_dist


MODE = DenseMode()
