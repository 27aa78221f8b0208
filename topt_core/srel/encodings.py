"""Graphormer's structural encodings for regions: spatial biases and centrality.

* Spatial encoding: a learned per-head function of the metric distance between
  two regions, added to the attention logits. ``gaussian``: Gaussian kernels
  of log-distance (in units of the typical region spacing) through a small MLP
  per head (continuous); ``bucket``: Graphormer's learned bias per distance
  bucket plus per hop count in the neighbour graph.
* Mobility bias: a learned per-head weight on the (robustly scaled) flow
  between two regions, Graphormer's edge encoding for the OD graph.
* Centrality encoding: learned embeddings of node degree in the neighbour
  graph and of bucketised mobility out/in strength, added to node features.

Every pair bias has one signature: ``bias(pairs) -> (..., heads)`` where ``pairs`` is a
``PairFeatures`` whose tensors cover the pairs that attend (all N x N pairs in the dense
mode), so attention implementations never need to know which biases exist.

Each module sets its initial weights in ``reset_parameters()``: ``__init__`` allocates the
parameters without drawing (``skip_init``) and then calls it, so a reset after a fresh
``torch.manual_seed`` gives back the weights a build after that seed gives. The draws (and their
order) are those the modules made before ``reset_parameters`` existed, a torch layer's default
draw included where a fixed initial value then overwrites it: every weight built after one (the
whole SREL model's) stays bit-identical.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import skip_init


GRID = 513          # points of the spatial-bias lookup table


def grid_top(u_max: float) -> float:
    """The largest u of the lookup table: 1.25 x the training data's largest u."""
    return 1.25 * float(u_max)


def interpolation(u: torch.Tensor, u_max: float):
    """Fixed linear-interpolation weights of each u between two grid points, as sparse matrices.

    Returns (S, S^T) with S of shape (pairs, GRID): ``S @ table`` reads a (GRID, heads) table at
    every pair, ``S^T @ grad`` is the table's gradient. u never changes during training, so this is
    built once; both products are sparse-dense matmuls (5x faster than an embedding gather and its
    backward at N = 1024).
    """
    top = grid_top(u_max)
    pos = u.reshape(-1).clamp(0.0, top) * ((GRID - 1) / top)
    i0 = pos.floor().long().clamp(max=GRID - 2)
    f = (pos - i0).to(torch.float32)
    p = pos.numel()
    rows = torch.arange(p, device=u.device).repeat(2)
    cols = torch.cat([i0, i0 + 1])
    vals = torch.cat([1.0 - f, f])
    import warnings

    with warnings.catch_warnings():              # "sparse CSR support is in beta": noise for users
        warnings.simplefilter("ignore", UserWarning)
        s = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (p, GRID)).coalesce().to_sparse_csr()
        st = torch.sparse_coo_tensor(torch.stack([cols, rows]), vals, (GRID, p)).coalesce().to_sparse_csr()
    return s, st


class _ReadTable(torch.autograd.Function):
    """``S @ table`` with the gradient ``S^T @ grad`` (fixed S)."""

    @staticmethod
    def forward(ctx, table, s, st):
        ctx.st = st
        return s @ table

    @staticmethod
    def backward(ctx, grad):
        return ctx.st @ grad.contiguous(), None, None


class GaussianSpatialBias(nn.Module):
    """bias[i, j, h] = MLP_h(Gaussian kernels of u_ij), u = log1p(distance / spacing).

    The function of one number is evaluated on a fine grid of u (``GRID`` points up to 1.25 u_max,
    u_max being the training data's, carried by ``pairs``) and read off by linear interpolation
    (``interpolation``, fixed sparse weights built once per input), so the MLP runs on GRID values
    instead of N² x kernels; u beyond the grid reads its last value.
    """

    def __init__(self, heads: int, kernels: int, u_max: float = 4.0):
        super().__init__()
        self.u_max = float(u_max)
        self.means = nn.Parameter(torch.empty(kernels))
        self.log_widths = nn.Parameter(torch.empty(kernels))
        self.mlp = nn.Sequential(skip_init(nn.Linear, kernels, kernels), nn.GELU(),
                                 skip_init(nn.Linear, kernels, heads))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kernels evenly spaced over [0, u_max] with one width; the MLP's layers torch's default."""
        kernels = self.means.numel()
        with torch.no_grad():
            self.means.copy_(torch.linspace(0.0, self.u_max, kernels))
            self.log_widths.fill_(float(torch.log(torch.tensor(self.u_max / kernels + 0.1))))
        self.mlp[0].reset_parameters()
        self.mlp[2].reset_parameters()

    def function(self, u: torch.Tensor) -> torch.Tensor:
        """The bias as a function of u, evaluated exactly: (..., heads)."""
        phi = torch.exp(-0.5 * ((u.unsqueeze(-1) - self.means) / self.log_widths.exp()) ** 2)
        return self.mlp(phi)

    def forward(self, pairs) -> torch.Tensor:
        u = pairs.u
        grid = torch.linspace(0.0, grid_top(pairs.u_max), GRID, device=u.device, dtype=u.dtype)
        table = self.function(grid)                                          # (GRID, heads)
        if pairs.interp is None:
            pairs.interp = interpolation(u, pairs.u_max)
        s, st = pairs.interp
        return _ReadTable.apply(table, s, st).view(*u.shape, table.shape[1])


class BucketSpatialBias(nn.Module):
    """bias[h, i, j] = b_h[distance bucket(i, j)] + c_h[hop count(i, j)] (Graphormer)."""

    def __init__(self, heads: int, buckets: int, max_hops: int, u_max: float = 4.0):
        super().__init__()
        self.register_buffer("edges", torch.linspace(0.0, u_max, buckets + 1)[1:-1])
        self.dist = skip_init(nn.Embedding, buckets, heads)
        self.hops = skip_init(nn.Embedding, max_hops + 1, heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Both tables zero (no bias until training finds one). The embeddings' default draws come first,
        as they always did, so the weights built after this module keep their values."""
        self.dist.reset_parameters()
        self.hops.reset_parameters()
        nn.init.zeros_(self.dist.weight)
        nn.init.zeros_(self.hops.weight)

    def forward(self, pairs) -> torch.Tensor:
        b = torch.bucketize(pairs.u, self.edges)
        return self.dist(b) + self.hops(pairs.hops.long())


class MobilityBias(nn.Module):
    """bias[h, i, j] = w_h * f_ij with f the scaled log flow between i and j (both directions)."""

    def __init__(self, heads: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(heads, 1, 1))     # (heads, 1, 1): the saved shape
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero: no flow bias until training finds one."""
        nn.init.zeros_(self.weight)

    def forward(self, pairs) -> torch.Tensor:
        return pairs.flow.unsqueeze(-1) * self.weight.view(-1)


class CentralityEncoding(nn.Module):
    """z_i = E_deg[min(degree_i, max_degree)] + E_out[bucket(out_i)] + E_in[bucket(in_i)]."""

    def __init__(self, dim: int, max_degree: int, strength_buckets: int, with_mobility: bool):
        super().__init__()
        self.max_degree = max_degree
        self.degree = skip_init(nn.Embedding, max_degree + 1, dim)
        self.with_mobility = with_mobility
        if with_mobility:
            self.out_strength = skip_init(nn.Embedding, strength_buckets, dim)
            self.in_strength = skip_init(nn.Embedding, strength_buckets, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every table N(0, 0.02²). Each embedding's default draw comes first, in the order they always
        came (degree; out, in), so the weights built after this module keep their values."""
        self.degree.reset_parameters()
        nn.init.normal_(self.degree.weight, std=0.02)
        if self.with_mobility:
            self.out_strength.reset_parameters()
            self.in_strength.reset_parameters()
            nn.init.normal_(self.out_strength.weight, std=0.02)
            nn.init.normal_(self.in_strength.weight, std=0.02)

    def forward(self, degree: torch.Tensor, strength_bucket: torch.Tensor | None) -> torch.Tensor:
        z = self.degree(degree.clamp(max=self.max_degree))
        if self.with_mobility and strength_bucket is not None:
            z = z + self.out_strength(strength_bucket[:, 0]) + self.in_strength(strength_bucket[:, 1])
        return z
