"""The one attention interface of the Graphormer fusion layers; the modes supply the pairs.

``RegionAttention(x, ctx)`` is multi-head self-attention over regions with an additive per-head
pair bias (spatial, mobility). It holds the parameters; ``ctx`` (an ``AttentionContext`` built by
the attention mode, ``srel/modes/``) says which pairs attend, holds their biases (computed once per
forward pass and shared by the layers) and runs the attention (``ctx.attend``):

* ``modes/dense.py``: every pair, bias (heads, N, N). Memory grows with N².
* ``modes/sparse.py``: local edges plus anchor clusters, one softmax per region over both.

Every mode uses the same parameters, so a model trained in one mode embeds in another.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import skip_init

from ..errors import ToptConfigError


class AttentionContext:
    """Which pairs attend and their biases, for one forward pass; a mode's ``context`` builds it."""

    mode = ""                                   # the mode's name (for messages and tests)

    def attend(self, layer, x: torch.Tensor) -> torch.Tensor:
        """``layer``'s attention (a ``RegionAttention``: qkv, proj, heads, dropout) over these pairs."""
        raise NotImplementedError


def _take(x, index):
    """x[index] along dim 0; index_select's backward is an index_add (x[index]'s is a serial index_put)."""
    return torch.index_select(x, 0, index)



class RegionAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ToptConfigError(f"Attention width {dim} must be divisible by the number of heads {heads}.")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.qkv = skip_init(nn.Linear, dim, 3 * dim)
        self.proj = skip_init(nn.Linear, dim, dim)
        self.keep_attention = False     # interpretation (srel/links.py): keep the last weights, head-averaged
        self.last_attention = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default for both projections, qkv first (the draw order the weights have always had)."""
        self.qkv.reset_parameters()
        self.proj.reset_parameters()

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """x: (N, dim) region states."""
        return ctx.attend(self, x)


def dense_attention_bytes(n: int, heads: int, layers: int) -> int:
    """float32 bytes the dense attention keeps per forward/backward: logits, softmax, dropout, grads."""
    return 4 * n * n * heads * layers * 5
