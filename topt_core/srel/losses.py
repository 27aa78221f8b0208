"""Self-supervised objectives (HAFusion/MVURE), with targets built from the views.

* Mobility: for each origin i the OD distribution over destinations is
  predicted as softmax_j(s_i . t_j) (and the reverse for destinations); the
  loss is the flow-weighted KL divergence to the observed distribution, i.e.
  MVURE's weighted cross-entropy minus its constant entropy (so 0 = perfect).
* POI / land use / extra (table views): MSE between the cosine similarity of
  decoded embeddings and the cosine similarity of the view vectors.
* Optional (``feature_weight``): MSE reconstruction of the preprocessed view
  features, which keeps region "size" (totals) in the embedding.

Each view (``topt_core.views``) builds its own target and names the loss it uses;
this module holds the loss functions and their weighted sum. Nothing here sees a
label; new cities need nothing precomputed.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def build_targets(data, model, device="cpu", inputs=None) -> dict:
    """view name -> that view's self-supervised target (``View.ssl_target``), plus the input features.

    In the sparse mode (``inputs.mode``) the targets are per pair (observed OD pairs, unit view
    vectors for sampled pairs): nothing N x N.
    """
    stats = model.stats()
    sparse = inputs is not None and inputs.mode == "sparse"
    out = {v.name: v.ssl_target(data, stats, device, sparse=sparse, config=model.config) for v in model.view_units}
    out["features"] = inputs.features if inputs is not None else {}
    return out


def od_kl(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor, entropy: float) -> torch.Tensor:
    """Flow-weighted KL of the OD distributions, both directions, per unit of (normalised) flow."""
    total = w.sum().clamp_min(1e-12)
    ce_out = -(w * F.log_softmax(src @ dst.T, dim=1)).sum()
    ce_in = -(w.T * F.log_softmax(dst @ src.T, dim=1)).sum()
    return (ce_out + ce_in) / total - entropy


def similarity_mse(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    u = F.normalize(z, dim=1)
    return F.mse_loss(u @ u.T, target)


def sampled_similarity_mse(z: torch.Tensor, unit: torch.Tensor, pairs: int) -> torch.Tensor:
    """``similarity_mse`` estimated on ``pairs`` uniformly drawn partners per region (unbiased for the
    all-pairs mean); ``unit`` are the view vectors scaled to unit length. Draws use torch's seeded RNG."""
    n = z.shape[0]
    i = torch.arange(n, device=z.device).repeat_interleave(pairs)
    j = torch.randint(0, n, (n * pairs,), device=z.device)
    u = F.normalize(z, dim=1)
    return F.mse_loss((u[i] * u[j]).sum(-1), (unit[i] * unit[j]).sum(-1))


def _sampled_ce(a, b, rows, cols, w, counts, n: int, negatives: int):
    """sum_ij w_ij (log Z_i - a_i.b_j), Z_i = sum over all j of exp(a_i.b_j) estimated from the observed
    j and ``negatives`` destinations shared by all origins (weighted by the unobserved share)."""
    from torch_geometric.utils import scatter

    s_obs = (a[rows] * b[cols]).sum(-1)
    neg = torch.randint(0, n, (negatives,), device=a.device)
    s_neg = a @ b[neg].T                                                 # (N, R), no N x N
    with torch.no_grad():
        top = torch.maximum(scatter(s_obs, rows, dim=0, dim_size=n, reduce="max"), s_neg.max(1).values)
    rest = ((n - counts) / negatives).clamp_min(0.0)
    z = scatter(torch.exp(s_obs - top[rows]), rows, dim=0, dim_size=n, reduce="sum") + \
        torch.exp(s_neg - top[:, None]).sum(1) * rest
    log_z = top + torch.log(z.clamp_min(1e-30))
    return (w * (log_z[rows] - s_obs)).sum()


def sampled_od_kl(src: torch.Tensor, dst: torch.Tensor, t: dict) -> torch.Tensor:
    """``od_kl`` over the observed OD pairs with sampled normalisers (the sparse mode)."""
    ce_out = _sampled_ce(src, dst, *t["out"], t["n"], t["negatives"])
    ce_in = _sampled_ce(dst, src, *t["in"], t["n"], t["negatives"])
    return (ce_out + ce_in) / t["total"] - t["entropy"]


def srel_loss(model, emb: torch.Tensor, targets: dict) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the per-view losses (each view's ``ssl_loss``), and each part as a float."""
    cfg = model.config
    total = emb.new_zeros(())
    parts = {}
    for view in model.view_units:
        loss = view.ssl_loss(model.decoders, emb, targets[view.name])
        parts[view.name] = float(loss.detach())
        total = total + view.loss_weight(cfg) * loss
    if cfg.feature_weight > 0:
        rec = sum(F.mse_loss(model.feature_decoders[v](emb), targets["features"][v]) for v in model.views)
        parts["features"] = float(rec.detach())
        total = total + cfg.feature_weight * rec
    return total, parts
