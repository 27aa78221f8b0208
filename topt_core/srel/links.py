"""What the model attends to, as map data: top attention partners per region and influence fields.

``attention_links`` runs the trained model once in eval mode with every attention layer keeping its
weights (averaged over heads), averages them over layers and, for an ensemble, over restarts, and
returns for each region its ``k`` strongest partners (``Links``) plus per-region fields:

* ``attn_in``: attention the region receives from all others (sum over the attending regions);
* ``attn_dist_m``: the attention-weighted mean distance of what the region attends to, in metres;
* ``centrality``: its neighbour count in the neighbour graph (the model's degree encoding).

The attention mode (``srel/modes/``) reads its own weights: in the sparse mode the partners come from
the local edges; the attention a region pays to an anchor (a cluster of regions) counts towards
``attn_dist_m`` at the anchor's centre and is spread evenly over the anchor's members in ``attn_in``.
Nothing N x N is built in that mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


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
    mode: str                 # the attention mode's name (``srel/modes/``)
    averaged: str             # what the weights are averaged over, in words
    whole_rows: bool = False  # every partner is a region: with k >= N - 1 the links hold each whole row


def _maps(model, inp):
    """Layer-averaged attention of one model, in the inputs' mode's form (dense: (N, N))."""
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
    return inp.mode.layer_average(maps)


def attention_links(model, data, k: int = 5, device: str = "cpu") -> Links:
    from .inputs import build_inputs
    from .model import SrelEnsemble

    members = list(model.members) if isinstance(model, SrelEnsemble) else [model]
    if not members[0].layers:
        raise ValueError("the model has no attention layers (layers=0): there are no links to show")
    members = [m.to(device).eval() for m in members]
    inp = build_inputs(members[0], data, device)
    maps = [_maps(m, inp) for m in members]
    c = np.asarray(data.centroids, dtype=np.float64)
    what = (f"over the {members[0].config.heads} heads, the {len(members[0].layers)} layers"
            + (f" and the {len(members)} restarts" if len(members) > 1 else ""))
    tgt, src, w, rank, attn_in, attn_dist = inp.mode.links(maps, inp, data, k)
    dist = np.sqrt(((c[tgt] - c[src]) ** 2).sum(1))
    od = np.zeros(len(tgt), dtype=bool)
    if data.mobility is not None and data.mobility.nnz:
        m = data.mobility.tocsr()
        od = (np.asarray(m[tgt, src]).ravel() + np.asarray(m[src, tgt]).ravel()) > 0
    keep = w > 0
    return Links(src[keep], tgt[keep], w[keep], rank[keep], dist[keep], od[keep], attn_in, attn_dist,
                 inp.degree.cpu().numpy().astype(float), inp.mode.name, what, inp.mode.whole_rows)
