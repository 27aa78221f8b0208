"""Label-free spatial context: what a region's surroundings hold, at several scales.

Two ways of looking around, both from the regions alone (no label is read):

* ``ring_means``: the mean of a feature over the regions exactly 1, 2, ... rings away in the
  neighbour graph (touching polygons), as srai's contextual count embedder does; the benchmark's
  *contextual* baseline.
* ``knn_density``: the density of counts (sum of counts / sum of areas) over the k nearest
  regions, for several k: "how many shops per km² within the nearest 8, 32, 128 regions". A sum
  over a neighbourhood is far less noisy than one sparse region's count (a tract with 0 OSM POIs
  in a dense district reads as dense), and the scales reach where the signal is (income and
  density vary over kilometres, not across one street).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def ring_means(x: np.ndarray, edges: np.ndarray, rings: int = 3) -> np.ndarray:
    """(N, F * rings): the mean of ``x`` over the regions exactly r hops away, r = 1..rings.

    A region without any region r hops away gets the mean of the nearest ring it has (or its own
    value): the aggregate then says "like here", not "zero".
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    a = sp.csr_matrix((np.ones(e.shape[1]), (e[0], e[1])), shape=(n, n))
    a.data[:] = 1.0
    seen = sp.identity(n, format="csr", dtype=np.float64)
    frontier = seen
    out, last = [], x
    for _ in range(rings):
        reach = (frontier @ a + frontier) > 0
        ring = (reach.astype(np.float64) - (seen > 0).astype(np.float64))
        ring.data = np.clip(ring.data, 0, None)
        ring.eliminate_zeros()
        size = np.asarray(ring.sum(1)).ravel()
        mean = np.where(size[:, None] > 0, (ring @ x) / np.maximum(size, 1)[:, None], last)
        out.append(mean)
        last = mean
        seen = ((seen + ring) > 0).astype(np.float64)
        frontier = ring
    return np.concatenate(out, axis=1)


def knn_density(counts: np.ndarray, centroids: np.ndarray, areas: np.ndarray, scales=(8, 32, 128)) -> np.ndarray:
    """(N, (C + 1) * len(scales)): log1p of counts per km² over each region's k nearest regions (itself
    included), per column and for the row total, for each k in ``scales`` (capped at N). Sparse sums:
    memory N x max(scales), never N x N or N x k x C."""
    from scipy.spatial import cKDTree

    c = np.asarray(counts, dtype=np.float64)
    c = np.concatenate([c, c.sum(1, keepdims=True)], axis=1)
    xy = np.asarray(centroids, dtype=np.float64)
    area_km2 = np.maximum(np.asarray(areas, dtype=np.float64).reshape(-1), 1.0) / 1e6
    n = len(xy)
    kmax = int(min(max(scales), n))
    _, idx = cKDTree(xy).query(xy, k=kmax)
    idx = np.asarray(idx).reshape(n, -1)
    cols = []
    for k in scales:
        k = int(min(k, n))
        nb = idx[:, :k].reshape(-1)
        w = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), nb)), shape=(n, n))
        total = np.asarray(w @ c)                              # (N, C + 1)
        cols.append(np.log1p(total / (w @ area_km2)[:, None]))
    return np.concatenate(cols, axis=1)


def geometry_features(areas, perimeters=None) -> np.ndarray:
    """(N, 1 or 3): log area (km²), and with perimeters log perimeter (km) and compactness
    (Polsby-Popper 4 pi A / P², 1 for a disc, near 0 for a sliver)."""
    a = np.maximum(np.asarray(areas, dtype=np.float64).reshape(-1), 1.0)
    cols = [np.log(a / 1e6)]
    if perimeters is not None:
        p = np.maximum(np.asarray(perimeters, dtype=np.float64).reshape(-1), 1.0)
        cols += [np.log(p / 1e3), np.clip(4 * np.pi * a / p ** 2, 0.0, 1.0)]
    return np.stack(cols, axis=1)
