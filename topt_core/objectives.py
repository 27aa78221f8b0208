"""Self-supervised loss functions of stage 1, pure functions of tensors (HAFusion/MVURE).

* ``od_kl``: for each origin i the OD distribution over destinations is predicted as
  softmax_j(s_i . t_j) (and the reverse for destinations); the loss is the flow-weighted KL divergence
  to the observed distribution, i.e. MVURE's weighted cross-entropy minus its constant entropy
  (so 0 = perfect). ``sampled_od_kl`` is the same over the observed pairs with sampled normalisers.
* ``similarity_mse``: MSE between the cosine similarity of decoded embeddings and a target
  similarity matrix; ``sampled_similarity_mse`` estimates it from unit view vectors without N x N.

The views (``topt_core.views``) name the loss they use and import it from here, so the data layer
does not depend on stage 1 (``topt_core.srel``); ``srel.losses`` re-exports these and adds the
weighted sum. Needs torch (and torch-geometric's ``scatter`` for the sampled OD normaliser) only.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def _scatter(src, index, n, reduce):
    """Sum or max of the rows of ``src`` into ``n`` rows by ``index`` (torch-geometric's ``scatter``)."""
    import warnings

    with warnings.catch_warnings():          # torch-geometric's import calls the deprecated torch.jit.script
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch_geometric.utils import scatter

    return scatter(src, index, dim=0, dim_size=n, reduce=reduce)


def od_kl(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor, entropy: float) -> torch.Tensor:
    """Flow-weighted KL of the OD distributions, both directions, per unit of (normalised) flow."""
    total = w.sum().clamp_min(1e-12)
    ce_out = -(w * F.log_softmax(src @ dst.T, dim=1)).sum()
    ce_in = -(w.T * F.log_softmax(dst @ src.T, dim=1)).sum()
    return (ce_out + ce_in) / total - entropy


def similarity_mse(z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the cosine similarities of ``z`` and ``target``; ``mask`` (N,) bool: only pairs of
    two regions that have the view count (the others have no mix to compare)."""
    u = F.normalize(z, dim=1)
    if mask is None:
        return F.mse_loss(u @ u.T, target)
    w = (mask[:, None] & mask[None, :]).to(z.dtype)
    return (((u @ u.T - target) ** 2) * w).sum() / w.sum().clamp_min(1.0)


def _rows(n: int, rows: int, device):
    """All regions, or ``rows`` of them drawn without replacement (this epoch's loss rows)."""
    return None if rows >= n else torch.randperm(n, device=device)[:rows]


def sampled_similarity_mse(z: torch.Tensor, unit: torch.Tensor, sample: int, rows: int = 1 << 62,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """``similarity_mse`` between ``rows`` regions (all by default) and ``sample`` regions, both drawn
    without replacement per epoch: an unbiased estimate of the all-pairs mean, exact when both cover N.
    Matrix products of (rows, sample): no N x N, no per-pair gathers. Draws use torch's seeded RNG."""
    n = z.shape[0]
    u = F.normalize(z, dim=1)
    if mask is None and sample >= n and rows >= n:
        return F.mse_loss(u @ u.T, unit @ unit.T)
    j = _rows(n, sample, z.device)
    i = _rows(n, rows, z.device)
    ui, ti = (u, unit) if i is None else (torch.index_select(u, 0, i), torch.index_select(unit, 0, i))
    uj, tj = (u, unit) if j is None else (torch.index_select(u, 0, j), torch.index_select(unit, 0, j))
    if mask is None:
        return F.mse_loss(ui @ uj.T, ti @ tj.T)
    mi = mask if i is None else torch.index_select(mask, 0, i)       # ``mask``: pairs of regions with the view
    mj = mask if j is None else torch.index_select(mask, 0, j)
    w = (mi[:, None] & mj[None, :]).to(z.dtype)
    return (((ui @ uj.T - ti @ tj.T) ** 2) * w).sum() / w.sum().clamp_min(1.0)


def _origin_subset(rows, cols, w, n: int, keep: int):
    """The observed pairs of ``keep`` origins drawn without replacement, weights scaled by n / keep."""
    if keep >= n:
        return rows, cols, w
    chosen = torch.zeros(n, dtype=torch.bool, device=rows.device)
    chosen[torch.randperm(n, device=rows.device)[:keep]] = True
    m = chosen[rows]
    return rows[m], cols[m], w[m] * (n / keep)


#: observed pairs per block in ``pair_dots``: the gathered rows of a block (2 x 32 768 x width floats, ~38 MB at
#: width 144) stay small, where gathering a city's million OD pairs at once moved gigabytes per epoch
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


class _PairDots(torch.autograd.Function):
    """s_k = a[rows_k] . b[cols_k] for the observed pairs, computed (and differentiated) block by block, so no
    (pairs x width) tensor is kept for the backward pass; the gradients are accumulated block after block in
    the pairs' order, the order the gather-multiply-sum it replaces accumulated them in."""

    @staticmethod
    def forward(ctx, a, b, rows, cols):
        ctx.save_for_backward(a, b, rows, cols)
        out = a.new_empty(rows.shape[0])
        for i in range(0, rows.shape[0], PAIR_BLOCK):
            r, c = rows[i:i + PAIR_BLOCK], cols[i:i + PAIR_BLOCK]
            out[i:i + PAIR_BLOCK] = (torch.index_select(a, 0, r) * torch.index_select(b, 0, c)).sum(-1)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, rows, cols = ctx.saved_tensors
        ga = torch.zeros_like(a) if ctx.needs_input_grad[0] else None
        gb = torch.zeros_like(b) if ctx.needs_input_grad[1] else None
        with _serial_index_add(a.device):
            for i in range(0, rows.shape[0], PAIR_BLOCK):
                r, c, g = rows[i:i + PAIR_BLOCK], cols[i:i + PAIR_BLOCK], grad[i:i + PAIR_BLOCK, None]
                if ga is not None:
                    ga.index_add_(0, r, g * torch.index_select(b, 0, c))
                if gb is not None:
                    gb.index_add_(0, c, torch.index_select(a, 0, r) * g)
        return ga, gb, None, None


def pair_dots(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(pairs,) dot products a[rows] . b[cols] (the OD loss's observed pairs) without a (pairs x width) tensor."""
    if rows.shape[0] <= PAIR_BLOCK:
        return (torch.index_select(a, 0, rows) * torch.index_select(b, 0, cols)).sum(-1)
    return _PairDots.apply(a, b, rows, cols)


def _sampled_ce(a, b, rows, cols, w, counts, n: int, negatives: int):
    """sum_ij w_ij (log Z_i - a_i.b_j), Z_i = sum over all j of exp(a_i.b_j) estimated from the observed
    j and ``negatives`` destinations drawn without replacement and shared by all origins (weighted by
    the unobserved share); exact when negatives >= N."""
    pick = torch.index_select
    s_obs = pair_dots(a, b, rows, cols)
    if negatives >= n:                                                   # small layers: the exact normaliser
        log_z = torch.logsumexp(a @ b.T, dim=1)
        return (w * (pick(log_z, 0, rows) - s_obs)).sum()
    neg = torch.randperm(n, device=a.device)[:negatives]
    s_neg = a @ pick(b, 0, neg).T                                        # (N, R), no N x N
    with torch.no_grad():
        top = torch.maximum(_scatter(s_obs, rows, n, "max"), s_neg.max(1).values)
    rest = ((n - counts) / negatives).clamp_min(0.0)
    z = _scatter(torch.exp(s_obs - pick(top, 0, rows)), rows, n, "sum") + \
        torch.exp(s_neg - top[:, None]).sum(1) * rest
    log_z = top + torch.log(z.clamp_min(1e-30))
    return (w * (pick(log_z, 0, rows) - s_obs)).sum()


def sampled_od_kl(src: torch.Tensor, dst: torch.Tensor, t: dict) -> torch.Tensor:
    """``od_kl`` over the observed OD pairs with sampled normalisers (the sparse mode)."""
    n, keep = t["n"], t.get("rows", t["n"])
    ce = []
    for a, b, (rows, cols, w, counts) in ((src, dst, t["out"]), (dst, src, t["in"])):
        rows, cols, w = _origin_subset(rows, cols, w, n, keep)
        ce.append(_sampled_ce(a, b, rows, cols, w, counts, n, t["negatives"]))
    ce_out, ce_in = ce
    return (ce_out + ce_in) / t["total"] - t["entropy"]
