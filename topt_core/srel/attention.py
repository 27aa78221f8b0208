"""The one attention interface of the Graphormer fusion layers, dense or sparse.

``RegionAttention(x, ctx)`` is multi-head self-attention over regions with an additive per-head
pair bias (spatial, mobility). ``ctx`` (``AttentionContext``) says which pairs attend and holds
their biases, computed once per forward pass and shared by the layers:

* ``dense``: every pair; ``bias`` is (heads, N, N). Memory grows with N².
* ``sparse``: local edges (dst <- src) with ``edge_bias`` (E, heads), plus every region to every
  anchor (cluster of regions, ``srel/graph.py``) with ``anchor_bias`` (N, M, heads). One softmax
  per region and head runs over both sets, so the weights of a region still sum to 1. Dropout
  applies to the local weights only. Scatter sums and maxima come from torch-geometric's
  ``utils.scatter`` (plain torch underneath).

Both modes use the same parameters, so a model trained in one mode embeds in the other.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ATTENTION_MODES
from ..errors import ToptConfigError


@dataclass
class AttentionContext:
    mode: str                                   # "dense" or "sparse"
    bias: torch.Tensor | None = None            # dense: (heads, N, N) or None
    dst: torch.Tensor | None = None             # sparse: (E,) attending region
    src: torch.Tensor | None = None             # sparse: (E,) attended region
    edge_bias: torch.Tensor | None = None       # sparse: (E, heads) or None
    anchor_of: torch.Tensor | None = None       # sparse: (N,) anchor of each region
    anchor_log_count: torch.Tensor | None = None  # sparse: (M,) log regions per anchor
    anchor_bias: torch.Tensor | None = None     # sparse: (N, M, heads) or None


def _take(x, index):
    """x[index] along dim 0; index_select's backward is an index_add (x[index]'s is a serial index_put)."""
    return torch.index_select(x, 0, index)


def _scatter(src, index, n, reduce):
    import warnings

    with warnings.catch_warnings():          # torch-geometric's import calls the deprecated torch.jit.script
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch_geometric.utils import scatter

    return scatter(src, index, dim=0, dim_size=n, reduce=reduce)


class RegionAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0, mode: str = "dense"):
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ToptConfigError(f"Attention mode {mode!r} is not available; expected one of {ATTENTION_MODES}.")
        if dim % heads:
            raise ToptConfigError(f"Attention width {dim} must be divisible by the number of heads {heads}.")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.keep_attention = False     # interpretation (srel/links.py): keep the last weights, head-averaged
        self.last_attention = None

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """x: (N, dim) region states."""
        if ctx.mode == "sparse":
            return self._sparse(x, ctx)
        return self._dense(x, ctx.bias)

    def _dense(self, x, bias):
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.head_dim).permute(1, 2, 0, 3)
        logits = (q @ k.transpose(-1, -2)) * (self.head_dim ** -0.5)
        if bias is not None:
            logits = logits + bias
        attn = torch.softmax(logits, dim=-1)
        if self.keep_attention:
            self.last_attention = attn.detach().mean(0)                          # (N, N)
        attn = F.dropout(attn, p=self.dropout, training=self.training)
        out = (attn @ v).permute(1, 0, 2).reshape(n, -1)
        return self.proj(out)

    def _sparse(self, x, ctx):
        n, h, dh = x.shape[0], self.heads, self.head_dim
        q, k, v = self.qkv(x).view(n, 3, h, dh).unbind(1)                    # (N, H, dh) each
        scale = dh ** -0.5
        le = (_take(q, ctx.dst) * _take(k, ctx.src)).sum(-1) * scale         # (E, H) local logits
        if ctx.edge_bias is not None:
            le = le + ctx.edge_bias
        m = ctx.anchor_log_count.shape[0]
        counts = ctx.anchor_log_count.exp()[:, None, None]
        ka = _scatter(k, ctx.anchor_of, m, "sum") / counts                   # (M, H, dh) mean keys
        va = _scatter(v, ctx.anchor_of, m, "sum") / counts
        la = torch.einsum("nhd,mhd->nmh", q, ka) * scale + ctx.anchor_log_count[None, :, None]
        if ctx.anchor_bias is not None:
            la = la + ctx.anchor_bias
        with torch.no_grad():                                                # a shift: no gradient needed
            top = torch.maximum(_scatter(le, ctx.dst, n, "max"), la.amax(1))  # (N, H)
        ee = torch.exp(le - _take(top, ctx.dst))
        ea = torch.exp(la - top[:, None, :])
        den = _scatter(ee, ctx.dst, n, "sum") + ea.sum(1)                    # (N, H)
        ae = ee / _take(den, ctx.dst)
        aa = ea / den[:, None, :]
        if self.keep_attention:
            self.last_attention = (ae.detach().mean(-1), aa.detach().mean(-1))     # (E,), (N, M)
        ae = F.dropout(ae, p=self.dropout, training=self.training)            # no dropout on the anchors: N x M masks would cost a third of an epoch
        out = _scatter(ae[..., None] * _take(v, ctx.src), ctx.dst, n, "sum") + torch.einsum("nmh,mhd->nhd", aa, va)
        return self.proj(out.reshape(n, -1))


def dense_attention_bytes(n: int, heads: int, layers: int) -> int:
    """float32 bytes the dense attention keeps per forward/backward: logits, softmax, dropout, grads."""
    return 4 * n * n * heads * layers * 5
