"""The one attention interface used by the Graphormer fusion layers.

``RegionAttention(x, bias)`` is multi-head self-attention over all regions
with an additive per-head pair bias (spatial, mobility). Only the dense
implementation exists now: ``bias`` is a (heads, N, N) tensor and memory
grows with N² (see ``estimate_dense_memory``). A neighbour-limited sparse
mode will plug in here behind the same class, so callers never change.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ToptConfigError

MODES = ("dense",)


class RegionAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0, mode: str = "dense"):
        super().__init__()
        if mode not in MODES:
            raise ToptConfigError(f"Attention mode {mode!r} is not available; expected one of {MODES}.")
        if dim % heads:
            raise ToptConfigError(f"Attention width {dim} must be divisible by the number of heads {heads}.")
        self.mode, self.heads, self.head_dim, self.dropout = mode, heads, dim // heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, dim) region states; bias: (heads, N, N) added to the logits, or None."""
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.head_dim).permute(1, 2, 0, 3)
        logits = (q @ k.transpose(-1, -2)) * (self.head_dim ** -0.5)
        if bias is not None:
            logits = logits + bias
        attn = torch.softmax(logits, dim=-1)
        attn = F.dropout(attn, p=self.dropout, training=self.training)
        out = (attn @ v).permute(1, 0, 2).reshape(n, -1)
        return self.proj(out)


def dense_attention_bytes(n: int, heads: int, layers: int) -> int:
    """float32 bytes the dense attention keeps per forward/backward: logits, softmax, dropout, grads."""
    return 4 * n * n * heads * layers * 5
