"""Products over index pairs in blocks: no (pairs x width) tensor is kept, the results are bit for bit the gathers'.

Two patterns cost most of a city-scale epoch when written as plain gathers (bench/RESULTS.md, issue 21):

* ``pair_dots(a, b, rows, cols)``: ``(a[rows] * b[cols]).sum(-1)``, the OD loss's observed pairs and the
  sparse attention's logits over its local edges;
* ``edge_sum(w, v, dst, src, n)``: ``scatter_sum(w[..., None] * v[src], dst)``, the sparse attention's
  weighted sum over the local edges.

As gathers, both keep (pairs x width) products for the backward pass (a few GB per layer at 100 000
regions) and, with deterministic algorithms on, torch turns each gather's backward ``index_add_`` into a
``scatter_add_`` with a materialised (pairs x width) index. Here the forward and backward passes run block
after block of ``PAIR_BLOCK`` pairs, in the pairs' order, with ``index_add_`` in its serial CPU form: the
order the gathers accumulated in, so on the CPU values and gradients are identical (``tests/core/test_gathers.py``;
on a GPU ``index_add_`` adds atomically or, deterministic, in sorted order: equal up to rounding).
Trailing dimensions (heads) are carried along: ``a`` may be (N, heads, width).
"""
from __future__ import annotations

import torch

#: pairs per block: the gathered rows of a block (2 x 32 768 x width floats, ~38 MB at width 144) stay small,
#: where gathering a city's million OD pairs or attention edges at once moved gigabytes per epoch
PAIR_BLOCK = 32768


class _serial_index_add:
    """On the CPU ``index_add_`` adds in index order, deterministic as it is; with deterministic algorithms
    on, torch routes it through ``scatter_add_`` with a materialised (pairs x width) index instead (most of
    the cost). This lifts that setting for the block loop on the CPU only (on a GPU the setting matters)."""

    def __init__(self, device):
        self.cpu = torch.device(device).type == "cpu"

    def __enter__(self):
        self.was = torch.are_deterministic_algorithms_enabled()
        self.warn = torch.is_deterministic_algorithms_warn_only_enabled()
        if self.cpu and self.was:
            torch.use_deterministic_algorithms(False)

    def __exit__(self, *exc):
        if self.cpu and self.was:
            torch.use_deterministic_algorithms(True, warn_only=self.warn)
        return False


def scatter(src, index, n: int, reduce: str):
    """Sum or max of the rows of ``src`` into ``n`` rows by ``index`` (torch-geometric's ``scatter``)."""
    import warnings

    with warnings.catch_warnings():          # torch-geometric's import calls the deprecated torch.jit.script
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch_geometric.utils import scatter as pyg_scatter

    return pyg_scatter(src, index, dim=0, dim_size=n, reduce=reduce)


def _blocks(n: int):
    for i in range(0, n, PAIR_BLOCK):
        yield slice(i, i + PAIR_BLOCK)


class _PairDots(torch.autograd.Function):
    """s_k = a[rows_k] . b[cols_k] over the last dimension, block by block."""

    @staticmethod
    def forward(ctx, a, b, rows, cols):
        ctx.save_for_backward(a, b, rows, cols)
        out = a.new_empty((rows.shape[0],) + tuple(a.shape[1:-1]))
        for s in _blocks(rows.shape[0]):
            out[s] = (torch.index_select(a, 0, rows[s]) * torch.index_select(b, 0, cols[s])).sum(-1)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, rows, cols = ctx.saved_tensors
        ga = torch.zeros(a.shape, dtype=a.dtype, device=a.device) if ctx.needs_input_grad[0] else None
        gb = torch.zeros(b.shape, dtype=b.dtype, device=b.device) if ctx.needs_input_grad[1] else None
        with _serial_index_add(a.device):
            for s in _blocks(rows.shape[0]):
                r, c, g = rows[s], cols[s], grad[s].unsqueeze(-1)
                if ga is not None:
                    ga.index_add_(0, r, g * torch.index_select(b, 0, c))
                if gb is not None:
                    gb.index_add_(0, c, torch.index_select(a, 0, r) * g)
        return ga, gb, None, None


class _EdgeSum(torch.autograd.Function):
    """out[i] = sum over the edges e with dst_e = i of w_e v[src_e], block by block."""

    @staticmethod
    def forward(ctx, w, v, dst, src, n):
        ctx.save_for_backward(w, v, dst, src)
        out = torch.zeros((n,) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device)
        with _serial_index_add(v.device):
            for s in _blocks(dst.shape[0]):
                out.index_add_(0, dst[s], w[s].unsqueeze(-1) * torch.index_select(v, 0, src[s]))
        return out

    @staticmethod
    def backward(ctx, grad):
        w, v, dst, src = ctx.saved_tensors
        grad = grad.contiguous()
        gw = torch.empty_like(w) if ctx.needs_input_grad[0] else None
        gv = torch.zeros(v.shape, dtype=v.dtype, device=v.device) if ctx.needs_input_grad[1] else None
        with _serial_index_add(v.device):
            for s in _blocks(dst.shape[0]):
                g = torch.index_select(grad, 0, dst[s])                        # the scatter's backward: a gather
                if gw is not None:
                    gw[s] = (g * torch.index_select(v, 0, src[s])).sum(-1)
                if gv is not None:
                    gv.index_add_(0, src[s], g * w[s].unsqueeze(-1))
        return gw, gv, None, None, None


def pair_dots(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(pairs, ...) dot products a[rows] . b[cols] over the last dimension, without a (pairs x width) tensor."""
    if rows.shape[0] <= PAIR_BLOCK or a.dtype != b.dtype:         # mixed dtypes: the gather's type promotion
        return (torch.index_select(a, 0, rows) * torch.index_select(b, 0, cols)).sum(-1)
    return _PairDots.apply(a, b, rows, cols)


def edge_sum(w: torch.Tensor, v: torch.Tensor, dst: torch.Tensor, src: torch.Tensor, n: int) -> torch.Tensor:
    """(n, ...) sums of w_e v[src_e] into dst_e; w: (pairs, ...) weights, v: (N, ..., width) values."""
    if dst.shape[0] <= PAIR_BLOCK or w.dtype != v.dtype:
        return scatter(w.unsqueeze(-1) * torch.index_select(v, 0, src), dst, n, "sum")
    return _EdgeSum.apply(w, v, dst, src, n)
