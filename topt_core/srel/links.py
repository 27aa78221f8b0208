"""What the model attends to, as map data: top attention partners per region and influence fields.

``attention_links`` runs the trained model once in eval mode with every attention layer keeping its
weights (averaged over heads), averages them over layers and, for an ensemble, over restarts, and
returns for each region its ``k`` strongest partners (``Links``) plus per-region fields:

* ``attn_in``: attention the region receives from all others (sum over the attending regions);
* ``attn_dist_m``: the attention-weighted mean distance of what the region attends to, in metres;
* ``centrality``: its neighbour count in the neighbour graph (the model's degree encoding).

In the sparse mode the partners come from the local edges; the attention a region pays to an anchor
(a cluster of regions) counts towards ``attn_dist_m`` at the anchor's centre and is spread evenly over
the anchor's members in ``attn_in``. Nothing N x N is built in that mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import spatial


@dataclass
class Links:
    source: np.ndarray        # (L,) row of the region attended to
    target: np.ndarray        # (L,) row of the region that attends
    weight: np.ndarray        # (L,) attention weight, in (0, 1]
    rank: np.ndarray          # (L,) 1 = the target's strongest partner
    distance_m: np.ndarray    # (L,)
    od_flow: np.ndarray       # (L,) bool: an observed OD flow between the two (either direction)
    attn_in: np.ndarray       # (N,)
    attn_dist_m: np.ndarray   # (N,)
    centrality: np.ndarray    # (N,) neighbour count
    mode: str                 # "dense" or "sparse"
    averaged: str             # what the weights are averaged over, in words


def _maps(model, inp):
    """Layer-averaged attention of one model: dense (N, N), or sparse ((E,), (N, M))."""
    layers = [layer.attn for layer in model.layers]
    for a in layers:
        a.keep_attention, a.last_attention = True, None
    try:
        with torch.no_grad():
            model(inp)
        maps = [a.last_attention for a in layers]
    finally:
        for a in layers:
            a.keep_attention, a.last_attention = False, None
    if inp.mode == "sparse":
        return (torch.stack([m[0] for m in maps]).mean(0).cpu().numpy(),
                torch.stack([m[1] for m in maps]).mean(0).cpu().numpy())
    return torch.stack(maps).mean(0).cpu().numpy()


def attention_links(model, data, k: int = 5, device: str = "cpu") -> Links:
    from .inputs import build_inputs
    from .model import SrelEnsemble

    members = list(model.members) if isinstance(model, SrelEnsemble) else [model]
    if not members[0].layers:
        raise ValueError("the model has no attention layers (layers=0): there are no links to show")
    members = [m.to(device).eval() for m in members]
    inp = build_inputs(members[0], data, device)
    maps = [_maps(m, inp) for m in members]
    n, c = data.n, np.asarray(data.centroids, dtype=np.float64)
    what = (f"over the {members[0].config.heads} heads, the {len(members[0].layers)} layers"
            + (f" and the {len(members)} restarts" if len(members) > 1 else ""))
    if inp.mode == "dense":
        a = np.mean(maps, 0)                                               # (N, N), rows sum to 1
        d = spatial.pairwise_distances(c, np.float64)
        attn_dist = (a * d).sum(1)
        off = a.copy()
        np.fill_diagonal(off, 0.0)
        attn_in = off.sum(0)
        kk = min(k, n - 1)
        top = np.argsort(-off, axis=1, kind="stable")[:, :kk]
        tgt = np.repeat(np.arange(n), kk)
        src = top.reshape(-1)
        w = off[tgt, src]
        rank = np.tile(np.arange(1, kk + 1), n)
    else:
        e = np.mean([m[0] for m in maps], 0)
        an = np.mean([m[1] for m in maps], 0)
        dst, srcs = inp.dst.cpu().numpy(), inp.src.cpu().numpy()
        of = inp.anchor_of.cpu().numpy()
        counts = np.exp(inp.anchor_log_count.cpu().numpy())
        centres = np.zeros((len(counts), 2))
        np.add.at(centres, of, c)
        centres /= counts[:, None]
        d_e = np.sqrt(((c[dst] - c[srcs]) ** 2).sum(1))
        from scipy.spatial.distance import cdist

        attn_dist = np.bincount(dst, weights=e * d_e, minlength=n) + (an * cdist(c, centres)).sum(1)
        other = dst != srcs
        attn_in = np.bincount(srcs[other], weights=e[other], minlength=n) + (an.sum(0) / counts)[of]
        order = np.lexsort((-e, dst))                                      # by region, strongest first
        dst_o, src_o, e_o = dst[order], srcs[order], e[order]
        keep = dst_o != src_o
        dst_o, src_o, e_o = dst_o[keep], src_o[keep], e_o[keep]
        first = np.r_[0, np.flatnonzero(np.diff(dst_o)) + 1]
        pos = np.arange(len(dst_o)) - np.repeat(first, np.diff(np.r_[first, len(dst_o)]))
        sel = pos < k
        tgt, src, w, rank = dst_o[sel], src_o[sel], e_o[sel], pos[sel] + 1
    dist = np.sqrt(((c[tgt] - c[src]) ** 2).sum(1))
    od = np.zeros(len(tgt), dtype=bool)
    if data.mobility is not None and data.mobility.nnz:
        m = data.mobility.tocsr()
        od = (np.asarray(m[tgt, src]).ravel() + np.asarray(m[src, tgt]).ravel()) > 0
    keep = w > 0
    return Links(src[keep], tgt[keep], w[keep], rank[keep], dist[keep], od[keep], attn_in, attn_dist,
                 inp.degree.cpu().numpy().astype(float), inp.mode, what)
