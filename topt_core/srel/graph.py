"""Which regions attend to which in the sparse mode: local edges plus a coarse global channel.

Dense attention lets every region attend to every other (N x N). For city-scale layers the
sparse mode keeps what matters and summarises the rest, like a multipole approximation:

* **local edges** (i <- j): each region's ``local_neighbours`` nearest centroids, its
  ``od_partners`` strongest OD partners (both directions), and itself;
* **anchors**: the regions are grouped into M spatially compact clusters (KMeans on the
  centroids; M = sqrt(N) in [16, 128] by default); every region also attends to every anchor, whose key and value are the mean of
  its members' keys and values and whose logit carries log(cluster size). If the members of a
  cluster looked alike to a region, this equals dense attention to all of them; distant
  clusters are seen in aggregate, near regions one by one. The learned distance bias applies
  to anchors too (distance to the anchor's centre), so the spatial prior reaches across the city.

Nothing here allocates an N x N array: edges are O(N k), anchor pairs O(N M) with M <= 256.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class SparseGraph:
    dst: np.ndarray           # (E,) the region that attends (query)
    src: np.ndarray           # (E,) the region attended to (key/value)
    anchor_of: np.ndarray     # (N,) anchor (cluster) of each region
    anchor_xy: np.ndarray     # (M, 2) cluster centres, metres
    anchor_count: np.ndarray  # (M,) regions per cluster

    @property
    def n(self) -> int:
        return len(self.anchor_of)

    @property
    def m(self) -> int:
        return len(self.anchor_count)


def default_anchors(n: int) -> int:
    """M = sqrt(N), between 16 and 128 (never more than N): 100 anchors for 10 000 regions.

    The anchor terms cost N x M per head; with 2 sqrt(N) (256 at 50 000 regions) they took half of
    an epoch at 50 000 regions (bench/RESULTS.md, scale)."""
    return int(min(n, max(16, min(128, round(np.sqrt(n))))))


def local_edges(centroids, k: int, flow: sp.csr_matrix | None = None, od_partners: int = 0):
    """(dst, src) of the local edges, deduplicated, self-loops included, sorted by (dst, src)."""
    from scipy.spatial import cKDTree

    c = np.asarray(centroids, dtype=np.float64)
    n = len(c)
    kk = int(min(k, n - 1))
    parts_d, parts_s = [np.arange(n)], [np.arange(n)]
    if kk >= 1:
        _, idx = cKDTree(c).query(c, k=kk + 1)
        idx = idx.reshape(n, -1)
        parts_d.append(np.repeat(np.arange(n), kk))
        parts_s.append(idx[:, 1:].reshape(-1))
    if flow is not None and od_partners > 0 and flow.nnz:
        f = sp.csr_matrix(flow)
        rows, cols = [], []
        for i in range(n):
            a, b = f.indptr[i], f.indptr[i + 1]
            if b > a:
                order = np.argsort(-f.data[a:b], kind="stable")[:od_partners]
                cols.append(f.indices[a:b][order])
                rows.append(np.full(len(order), i))
        if rows:
            parts_d.append(np.concatenate(rows))
            parts_s.append(np.concatenate(cols))
    d = np.concatenate(parts_d).astype(np.int64)
    s = np.concatenate(parts_s).astype(np.int64)
    # both directions of every neighbour / partner link, each pair once
    d, s = np.concatenate([d, s]), np.concatenate([s, d])
    key = np.unique(d * n + s)
    return (key // n).astype(np.int64), (key % n).astype(np.int64)


def anchor_partition(centroids, m: int, seed: int = 0):
    """(anchor of each region, anchor centres, counts): KMeans on the centroids, empty clusters dropped."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    c = np.asarray(centroids, dtype=np.float64)
    m = int(min(m, len(c)))
    km = (KMeans(n_clusters=m, n_init=1, random_state=seed % 2 ** 31) if len(c) <= 20_000 else
          MiniBatchKMeans(n_clusters=m, n_init=1, random_state=seed % 2 ** 31, batch_size=4096))
    labels = km.fit_predict(c)
    used, labels = np.unique(labels, return_inverse=True)
    counts = np.bincount(labels, minlength=len(used)).astype(np.float64)
    xy = np.zeros((len(used), 2))
    np.add.at(xy, labels, c)
    return labels.astype(np.int64), xy / counts[:, None], counts


def build(centroids, k: int, flow=None, od_partners: int = 0, anchors: int = 0, seed: int = 0) -> SparseGraph:
    n = len(centroids)
    dst, src = local_edges(centroids, k, flow, od_partners)
    of, xy, counts = anchor_partition(centroids, anchors or default_anchors(n), seed)
    return SparseGraph(dst, src, of, xy, counts)
