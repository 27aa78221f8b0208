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

from .gathers import pair_dots, scatter



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
        top = torch.maximum(scatter(s_obs, rows, n, "max"), s_neg.max(1).values)
    rest = ((n - counts) / negatives).clamp_min(0.0)
    z = scatter(torch.exp(s_obs - pick(top, 0, rows)), rows, n, "sum") + \
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
