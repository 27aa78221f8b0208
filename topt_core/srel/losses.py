"""Self-supervised objectives (HAFusion/MVURE), with targets built from the views.

* Mobility: for each origin i the OD distribution over destinations is
  predicted as softmax_j(s_i . t_j) (and the reverse for destinations); the
  loss is the flow-weighted KL divergence to the observed distribution, i.e.
  MVURE's weighted cross-entropy minus its constant entropy (so 0 = perfect).
* POI / land use / extra: MSE between the cosine similarity of decoded
  embeddings and the cosine similarity of the view vectors.
* Optional (``feature_weight``): MSE reconstruction of the preprocessed view
  features, which keeps region "size" (totals) in the embedding.

Nothing here sees a label; new cities need nothing precomputed.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from . import views as V


def build_targets(data, model, device="cpu", inputs=None) -> dict:
    """view -> target tensor: OD weights (N, N) for mobility, cosine similarity (N, N) otherwise."""
    out = {"features": inputs["features"] if inputs is not None else {}}
    for view in model.views:
        if view == "mobility":
            w = V.od_target(data, float(model.stat("mobility.fence")[0]))
            out["mobility"] = torch.from_numpy(w).to(device)
            p = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
            q = w.T / np.maximum(w.T.sum(1, keepdims=True), 1e-12)
            ent = lambda a, m: float(-(m * np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), 0.0)).sum())
            out["mobility_entropy"] = (ent(p, w) + ent(q, w.T)) / max(float(w.sum()), 1e-12)
        else:
            out[view] = torch.from_numpy(V.similarity_target(data, view)).to(device)
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


def srel_loss(model, emb: torch.Tensor, targets: dict) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the per-view losses, and each part as a float."""
    cfg = model.config
    weights = {"mobility": cfg.mobility_weight, "poi": cfg.poi_weight, "landuse": cfg.landuse_weight,
               "extra": cfg.extra_weight}
    total = emb.new_zeros(())
    parts = {}
    for view in model.views:
        if view == "mobility":
            loss = od_kl(model.decoders["source"](emb), model.decoders["target"](emb), targets["mobility"],
                         targets["mobility_entropy"])
        else:
            loss = similarity_mse(model.decoders[view](emb), targets[view])
        parts[view] = float(loss.detach())
        total = total + weights[view] * loss
    if cfg.feature_weight > 0:
        rec = sum(F.mse_loss(model.feature_decoders[v](emb), targets["features"][v]) for v in model.views)
        parts["features"] = float(rec.detach())
        total = total + cfg.feature_weight * rec
    return total, parts
