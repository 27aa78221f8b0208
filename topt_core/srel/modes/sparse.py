"""The sparse attention mode: local edges plus anchor clusters, with sampled losses (nothing N x N).

Each region attends one by one to its nearest regions and strongest OD partners (``srel/graph.py``)
and to every anchor (a cluster of regions) with ``anchor_bias`` (N, M, heads); one softmax per region
and head runs over both sets, so the weights of a region still sum to 1. Dropout applies to the local
weights only. Scatter sums and maxima come from torch-geometric's ``utils.scatter``. The similarity
losses compare sampled rows and columns, the OD loss runs over the observed pairs with sampled
normalisers; below the sample sizes both are the dense mode's exact losses.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from ... import spatial
from ...errors import ToptConfigError, ToptResourceError
from ...gathers import edge_sum, pair_dots, scatter
from ..attention import AttentionContext, _take
from .base import AttentionMode, forward_passes, passes_advice


@dataclass
class SparseLayout:
    """The pairs that attend in the sparse mode (``SrelInputs.layout``)."""

    dst: torch.Tensor                  # (E,) attending region
    src: torch.Tensor                  # (E,) attended region
    anchor_of: torch.Tensor            # (N,) anchor of each region
    anchor_log_count: torch.Tensor     # (M,) log regions per anchor
    anchor_pairs: object = None        # PairFeatures of the (N, M) region-to-anchor pairs


@dataclass
class SparseContext(AttentionContext):
    dst: torch.Tensor | None = None             # (E,) attending region
    src: torch.Tensor | None = None             # (E,) attended region
    edge_bias: torch.Tensor | None = None       # (E, heads) or None
    anchor_of: torch.Tensor | None = None       # (N,) anchor of each region
    anchor_log_count: torch.Tensor | None = None  # (M,) log regions per anchor
    anchor_bias: torch.Tensor | None = None     # (N, M, heads) or None
    mode = "sparse"

    def attend(self, layer, x):
        n, h, dh = x.shape[0], layer.heads, layer.head_dim
        q, k, v = layer.qkv(x).view(n, 3, h, dh).unbind(1)                   # (N, H, dh) each
        scale = dh ** -0.5
        le = pair_dots(q, k, self.dst, self.src) * scale                     # (E, H) local logits
        if self.edge_bias is not None:
            le = le + self.edge_bias
        m = self.anchor_log_count.shape[0]
        counts = self.anchor_log_count.exp()[:, None, None]
        ka = scatter(k, self.anchor_of, m, "sum") / counts                  # (M, H, dh) mean keys
        va = scatter(v, self.anchor_of, m, "sum") / counts
        la = torch.einsum("nhd,mhd->nmh", q, ka) * scale + self.anchor_log_count[None, :, None]
        if self.anchor_bias is not None:
            la = la + self.anchor_bias
        with torch.no_grad():                                                # a shift: no gradient needed
            top = torch.maximum(scatter(le, self.dst, n, "max"), la.amax(1))  # (N, H)
        ee = torch.exp(le - _take(top, self.dst))
        ea = torch.exp(la - top[:, None, :])
        den = scatter(ee, self.dst, n, "sum") + ea.sum(1)                   # (N, H)
        ae = ee / _take(den, self.dst)
        aa = ea / den[:, None, :]
        if layer.keep_attention:
            layer.last_attention = (ae.detach().mean(-1), aa.detach().mean(-1))    # (E,), (N, M)
        ae = F.dropout(ae, p=layer.dropout, training=layer.training)          # no dropout on the anchors: N x M masks would cost a third of an epoch
        out = edge_sum(ae, v, self.dst, self.src, n) + torch.einsum("nmh,mhd->nhd", aa, va)
        return layer.proj(out.reshape(n, -1))


#: the process before any tensor: Python, torch, numpy, scipy and the layer's arrays (a 5 000-region run peaks
#: at 1.00 GiB, bench/RESULTS.md; 300 MiB left the estimate below that peak once the edge products ran in blocks)
BASE_BYTES = 512 * 2 ** 20


def estimate_sparse_memory(n_regions: int, config, od_pairs: int | None = None) -> int:
    """Rough peak bytes of one sparse training step: O(N (k + M)), nothing N².

    Per layer the local edges' logits and weights (E x heads, a few copies; their products with the
    queries, keys and values run in blocks, ``gathers.py``, counted here as one E x width tensor of margin),
    the anchor logits (N x M x heads, a few copies); the OD loss's observed pairs (default 20 per region)
    and the sampled pairs of the similarity losses; node states. The attention and node terms count once per
    forward pass a step keeps (three with the sparse-POI recipe's masked and contrastive passes).
    """
    from ..graph import default_anchors

    n, c = int(n_regions), config
    e = n * (2 * (c.local_neighbours + c.od_partners) + 1)      # both directions, deduplicated at most this
    m = c.anchors or default_anchors(n)
    h, d = c.heads, c.hidden_dim
    attn = c.layers * (4 * e * (d + 6 * h) + 4 * n * m * h * 6)
    pairs = 4 * (e * 4 + n * m * 3) + 8 * n * m                  # edge/anchor features, the N x M distances
    od = 4 * (od_pairs if od_pairs is not None else 20 * n) * (4 * c.embed_dim + 8) + 4 * n * min(n, c.od_negatives) * 8
    sim = 4 * n * min(n, c.similarity_sample) * 6 + 4 * n * c.embed_dim * 6
    nodes = 4 * n * (d * (8 + 6 * c.layers) + c.embed_dim * 16)
    params = 4 * 3 * (d * d * (4 + 12 * c.layers) + c.embed_dim * c.embed_dim * 6)
    kept = (c.restarts - 1) * (params // 3 + 4 * n * c.embed_dim * 2)
    return int(forward_passes(c) * (attn + nodes) + pairs + od + sim + params + kept + BASE_BYTES)


def sampled_od_target(m, device, negatives: int) -> dict:
    """The OD target in per-pair form: observed pairs with weights OD / mean (as the dense mode's), the
    number of observed destinations per origin (both directions) and the constant entropy term.
    ``m``: the winsorised OD table (csr)."""
    n = m.shape[0]
    m = m.copy()
    m.eliminate_zeros()
    total_raw = float(m.sum())
    mean = total_raw / (n * n)
    w = (m / (mean if mean > 0 else 1.0)).tocsr().astype(np.float32)

    def side(mat):
        coo = mat.tocoo()
        counts = np.diff(mat.indptr).astype(np.float32)
        row_sum = np.asarray(mat.sum(1)).ravel()
        p = coo.data / np.maximum(row_sum[coo.row], 1e-12)
        ent = float(-(coo.data * np.log(np.where(p > 0, p, 1.0))).sum())
        t = (torch.from_numpy(coo.row.astype(np.int64)).to(device), torch.from_numpy(coo.col.astype(np.int64)).to(device),
             torch.from_numpy(coo.data.astype(np.float32)).to(device), torch.from_numpy(counts).to(device))
        return t, ent

    out, e_out = side(w)
    inn, e_in = side(w.T.tocsr())
    total = max(float(w.sum()), 1e-12)
    return {"out": out, "in": inn, "n": n, "negatives": int(negatives), "total": total,
            "entropy": (e_out + e_in) / total}


class SparseMode(AttentionMode):
    name = "sparse"

    def check_config(self, config, data):
        if config.mobility_features == "rows" and "mobility" in data.views():
            raise ToptConfigError("mobility_features='rows' feeds one column per region, which the sparse attention "
                                  "mode (large layers) cannot afford; expected mobility_features='summary' (the "
                                  "default). Use it, or attention='dense' on a smaller layer.")

    def auto_reason(self, n, config):
        return f"auto: {n} regions > {config.auto_sparse_above}"

    def summary(self, n, config, why):
        from ..graph import default_anchors

        return (f"sparse attention ({why}): {config.local_neighbours} nearest regions + {config.od_partners} OD "
                f"partners one by one, {config.anchors or default_anchors(n)} anchor clusters for the rest of the city")

    def estimate_memory(self, n, config):
        return estimate_sparse_memory(n, config)

    def check_memory(self, n, config, device="cpu"):
        from .. import memory

        need = estimate_sparse_memory(n, config)
        avail = memory.available_memory(device)
        if avail is not None and need > avail:
            raise ToptResourceError(
                f"Training on {n} regions needs about {need / 1e9:.1f} GB (sparse attention) but only "
                f"{avail / 1e9:.1f} GB is available on {device}; use fewer regions (a smaller study area or a "
                "coarser grid), fewer local neighbours or anchors, or a machine with more memory"
                f"{passes_advice(config)}.")
        return need

    # -- inputs and attention --------------------------------------------------------------------
    def pair_inputs(self, inp, model, data, geometry, edges, flow, with_flow, stats, to):
        """Local edges, anchors and their pair features (``srel/graph.py``); nothing N x N."""
        from scipy.spatial.distance import cdist

        from .. import graph
        from ..inputs import PairFeatures

        cfg, n = model.config, data.n
        g = graph.build(data.centroids, cfg.local_neighbours, flow, cfg.od_partners, cfg.anchors, seed=cfg.seed)
        lay = SparseLayout(dst=to(g.dst), src=to(g.src), anchor_of=to(g.anchor_of),
                           anchor_log_count=to(np.log(g.anchor_count).astype(np.float32)))
        inp.pairs.u = to(np.log1p(geometry.units(g.dst, g.src)).astype(np.float32))
        a_u = np.log1p(cdist(np.asarray(data.centroids, dtype=np.float64), g.anchor_xy) / geometry.spacing)
        a_u = a_u.astype(np.float32)                                                           # (N, M)
        lay.anchor_pairs = PairFeatures(u=to(a_u), u_max=inp.pairs.u_max)
        if cfg.spatial_bias == "bucket":
            inp.pairs.hops = to(spatial.edge_hops(edges, n, g.dst, g.src, cfg.max_hops))
            lay.anchor_pairs.hops = to(np.full(a_u.shape, cfg.max_hops, dtype=np.int64))
        if with_flow:
            scale = float(stats["flow.scale"][0])
            inp.pairs.flow = to((np.log1p(np.asarray(flow[g.dst, g.src]).ravel()) / scale).astype(np.float32))
            onehot = sp.csr_matrix((np.ones(n), (np.arange(n), g.anchor_of)), shape=(n, g.m))
            lay.anchor_pairs.flow = to((np.log1p((flow @ onehot).toarray()) / scale).astype(np.float32))
        inp.layout = lay

    def context(self, model, inp):
        lay = inp.layout
        return SparseContext(dst=lay.dst, src=lay.src, edge_bias=model.pair_bias(inp.pairs),
                             anchor_of=lay.anchor_of, anchor_log_count=lay.anchor_log_count,
                             anchor_bias=model.pair_bias(lay.anchor_pairs))

    # -- losses: sampled -------------------------------------------------------------------------
    def similarity_loss(self, target, config, device):
        from ...objectives import sampled_similarity_mse
        from ...views import scaling

        unit = torch.from_numpy(scaling.unit_rows(target.vectors).astype(np.float32)).to(device)
        loss = partial(sampled_similarity_mse, unit=unit, sample=int(config.similarity_sample),
                       rows=int(config.loss_rows))
        return loss if target.mask is None else partial(loss, mask=torch.from_numpy(target.mask).to(device))

    def flows_loss(self, target, config, device):
        from ...objectives import sampled_od_kl

        t = sampled_od_target(target.flows, device, config.od_negatives)
        t["rows"] = int(config.loss_rows)
        return partial(sampled_od_kl, t=t)

    # -- interpretation --------------------------------------------------------------------------
    def layer_average(self, maps):
        return (torch.stack([m[0] for m in maps]).mean(0).cpu().numpy(),       # (E,) local edges
                torch.stack([m[1] for m in maps]).mean(0).cpu().numpy())       # (N, M) anchors

    def links(self, maps, inp, data, k):
        """Partners from the local edges; the attention paid to an anchor counts towards ``attn_dist`` at the
        anchor's centre and is spread evenly over the anchor's members in ``attn_in``."""
        from scipy.spatial.distance import cdist

        n, c, lay = data.n, np.asarray(data.centroids, dtype=np.float64), inp.layout
        e = np.mean([m[0] for m in maps], 0)
        an = np.mean([m[1] for m in maps], 0)
        dst, srcs = lay.dst.cpu().numpy(), lay.src.cpu().numpy()
        of = lay.anchor_of.cpu().numpy()
        counts = np.exp(lay.anchor_log_count.cpu().numpy())
        centres = np.zeros((len(counts), 2))
        np.add.at(centres, of, c)
        centres /= counts[:, None]
        d_e = np.sqrt(((c[dst] - c[srcs]) ** 2).sum(1))
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
        return dst_o[sel], src_o[sel], e_o[sel], pos[sel] + 1, attn_in, attn_dist


MODE = SparseMode()
