"""Self-supervised objectives (HAFusion/MVURE), with targets built from the views.

* Mobility: for each origin i the OD distribution over destinations is
  predicted as softmax_j(s_i . t_j) (and the reverse for destinations); the
  loss is the flow-weighted KL divergence to the observed distribution, i.e.
  MVURE's weighted cross-entropy minus its constant entropy (so 0 = perfect).
* POI / land use / extra (table views): MSE between the cosine similarity of
  decoded embeddings and the cosine similarity of the view vectors.
* Optional (``feature_weight``): MSE reconstruction of the preprocessed view
  features, which keeps region "size" (totals) in the embedding.
* Optional (``mask_weight``): masked regions, as GraphMAE masks nodes: each epoch the inputs of
  ``mask_rate`` of the regions are zeroed and the model must reconstruct them from what the
  attention brings in from their neighbours (a locality objective; ``masked_region_loss``).
* Optional (``contrast_weight``): GRACE-style InfoNCE between two passes with input dropout: a
  region's two embeddings must match each other rather than any other region's (``contrastive_loss``).

Each view (``topt_core.views``) builds its own mode-neutral target; the attention mode
chooses the exact or sampled form; the loss functions live in ``topt_core.objectives``
(so the views need not import stage 1) and are re-exported here; this module holds the
targets and the weighted sum. Nothing here sees a label; new cities need nothing precomputed.
"""
from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from ..objectives import od_kl, sampled_od_kl, sampled_similarity_mse, similarity_mse  # noqa: F401  (re-exported)


def build_targets(data, model, device="cpu", inputs=None) -> dict:
    """view name -> that view's self-supervised loss, plus the input features.

    Each view gives a mode-neutral target (``View.ssl_target``, ``topt_core/targets.py``); the inputs'
    attention mode (``srel/modes/``) turns it into its loss form: exact (N x N) in the dense mode, per
    pair (observed OD pairs, unit view vectors for sampled pairs, nothing N x N) in the sparse mode.
    Without ``inputs`` the exact (dense) form.
    """
    from . import modes

    stats, cfg = model.stats(), model.config
    mode = inputs.mode if inputs is not None else modes.get("dense")
    out = {v.name: mode.objective(v.ssl_target(data, stats, config=cfg), cfg, device) for v in model.view_units}
    out["features"] = inputs.features if inputs is not None else {}
    return out


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


def _with_features(inputs, change):
    """A copy of ``inputs`` whose every view's features went through ``change`` (the pairs are shared)."""
    return dataclasses.replace(inputs, features={v: change(f) for v, f in inputs.features.items()})


def masked_region_loss(model, inputs, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings of a forward pass with the inputs of a random ``rate`` of the regions zeroed, the MSE of
    reconstructing those regions' preprocessed features from them). The draw uses torch's seeded RNG."""
    n = inputs.n
    dev = next(iter(inputs.features.values())).device
    hidden = torch.rand(n, device=dev) < rate
    keep = (~hidden).to(torch.float32)[:, None]
    emb = model(_with_features(inputs, lambda f: f * keep))
    if not bool(hidden.any()):
        return emb, emb.new_zeros(())
    rec = sum(F.mse_loss(model.feature_decoders[v](emb[hidden]), inputs.features[v][hidden]) for v in model.views)
    return emb, rec / len(model.views)


def _dropped(inputs, rate: float):
    """The inputs with each feature entry zeroed with probability ``rate`` (torch's seeded RNG)."""
    if rate <= 0:
        return inputs
    return _with_features(inputs, lambda f: f * (torch.rand_like(f) >= rate).to(f.dtype))


def contrastive_loss(model, inputs, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(the first pass's embeddings, the symmetric InfoNCE of ``contrast_rows`` anchors against every region)."""
    e1, e2 = model(_dropped(inputs, cfg.contrast_drop)), model(_dropped(inputs, cfg.contrast_drop))
    z1, z2 = F.normalize(model.contrast_head(e1), dim=1), F.normalize(model.contrast_head(e2), dim=1)
    n = z1.shape[0]
    idx = torch.arange(n, device=z1.device) if cfg.contrast_rows >= n else \
        torch.randperm(n, device=z1.device)[:cfg.contrast_rows]
    loss = F.cross_entropy(z1[idx] @ z2.T / cfg.contrast_tau, idx) + \
        F.cross_entropy(z2[idx] @ z1.T / cfg.contrast_tau, idx)
    return e1, loss / 2
