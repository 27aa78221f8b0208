"""Spatial relations between regions: metric distances and the neighbour graph.

Stage 1 turns these into attention biases (distance) and centrality encodings
(degree, hop counts). Pure numpy/scipy so it stays importable without torch;
everything is in metres from ``RegionData.centroids``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import ToptConfigError, ToptDataError


@dataclass(frozen=True)
class PairGeometry:
    """Distances between chosen pairs of regions, in units of the typical spacing (no N x N array)."""

    centroids: np.ndarray       # (N, 2) metres
    spacing: float              # metres per unit (``distance_scale``)

    def units(self, rows, cols) -> np.ndarray:
        """Distance of each pair (rows[k], cols[k]) divided by the spacing (float64)."""
        c = np.asarray(self.centroids, dtype=np.float64)
        diff = c[np.asarray(rows)] - c[np.asarray(cols)]
        return np.sqrt((diff ** 2).sum(-1)) / self.spacing


def pairwise_distances(centroids: np.ndarray, dtype=np.float32) -> np.ndarray:
    """(N, N) Euclidean distances in metres between centroids (metric CRS)."""
    c = np.asarray(centroids, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 2:
        raise ToptDataError(f"centroids have shape {c.shape}; expected (N, 2) metric x/y.")
    diff = c[:, None, :] - c[None, :, :]
    return np.sqrt((diff ** 2).sum(-1)).astype(dtype)


def max_distance(centroids: np.ndarray, chunk: int = 2048) -> float:
    """Largest distance between two centroids in metres, without an N x N array.

    The farthest pair lies on the convex hull, so only hull vertices are compared (all points
    when the hull cannot be built, e.g. collinear centroids), in row chunks.
    """
    c = np.asarray(centroids, dtype=np.float64)
    if len(c) < 2:
        return 0.0
    pts = c
    if len(c) > 64:
        try:
            from scipy.spatial import ConvexHull

            pts = c[ConvexHull(c).vertices]
        except Exception:   # QhullError: degenerate (collinear or repeated) centroids
            pts = c
    best = 0.0
    for s in range(0, len(pts), chunk):
        diff = pts[s:s + chunk, None, :] - pts[None, :, :]
        best = max(best, float(np.sqrt((diff ** 2).sum(-1)).max()))
    return best


def knn_edges(centroids: np.ndarray, k: int) -> np.ndarray:
    """(2, E) undirected edges joining every region to its k nearest centroids."""
    from scipy.spatial import cKDTree

    c = np.asarray(centroids, dtype=np.float64)
    n = len(c)
    k = int(min(k, n - 1))
    if k < 1:
        return np.zeros((2, 0), dtype=np.int64)
    _, idx = cKDTree(c).query(c, k=k + 1)
    rows = np.repeat(np.arange(n), k)
    cols = idx[:, 1:].reshape(-1)
    return symmetrise(np.stack([rows, cols]), n)


def symmetrise(edges: np.ndarray, n: int) -> np.ndarray:
    """Undirected, deduplicated, self-loop-free (2, E) edge list in both directions."""
    e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    a = sp.coo_matrix((np.ones(e.shape[1]), (e[0], e[1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.int8).tolil()
    a.setdiag(0)
    a = a.tocoo()
    order = np.lexsort((a.col, a.row))
    return np.stack([a.row[order], a.col[order]]).astype(np.int64)


def neighbour_edges(centroids: np.ndarray, adjacency: np.ndarray | None, mode: str = "auto",
                    k: int = 6) -> np.ndarray:
    """The neighbour graph: touching polygons (``adjacency``) or k nearest centroids.

    ``mode="auto"`` uses touching polygons when given and every region has at
    least one neighbour there; regions left isolated (islands) get their k
    nearest centroids added so the graph has no isolated nodes.
    """
    n = len(centroids)
    from .config import NEIGHBOUR_MODES

    if mode not in NEIGHBOUR_MODES:
        raise ToptConfigError(f"neighbours mode must be auto, touch or knn, got {mode!r}.")
    if mode == "knn" or (mode == "auto" and (adjacency is None or np.asarray(adjacency).size == 0)):
        return knn_edges(centroids, k)
    if adjacency is None or np.asarray(adjacency).size == 0:
        raise ToptDataError("neighbours='touch' needs polygon adjacency but the data has none; "
                            "use neighbours='auto' or 'knn'.")
    e = symmetrise(adjacency, n)
    deg = np.bincount(e[0], minlength=n)
    if (deg == 0).any():
        lonely = np.flatnonzero(deg == 0)
        extra = knn_edges(centroids, k)
        extra = extra[:, np.isin(extra[0], lonely) | np.isin(extra[1], lonely)]
        e = symmetrise(np.concatenate([e, extra], axis=1), n)
    return e


def degrees(edges: np.ndarray, n: int) -> np.ndarray:
    """Number of neighbours of each region."""
    return np.bincount(np.asarray(edges[0], dtype=np.int64), minlength=n).astype(np.int64)


def hop_counts(edges: np.ndarray, n: int, max_hops: int) -> np.ndarray:
    """(N, N) shortest-path hop counts in the neighbour graph, clipped at ``max_hops``.

    Unreachable pairs get ``max_hops`` too (treated as "far"). int16 to keep
    the dense matrix small.
    """
    from scipy.sparse.csgraph import shortest_path

    a = sp.coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(n, n)).tocsr()
    h = shortest_path(a, method="D", unweighted=True, directed=False)
    h[~np.isfinite(h)] = max_hops
    return np.minimum(h, max_hops).astype(np.int16)


def edge_hops(edges: np.ndarray, n: int, dst, src, max_hops: int, chunk: int = 512) -> np.ndarray:
    """Hop counts in the neighbour graph for the pairs (dst[k], src[k]) only, clipped at ``max_hops``.

    Breadth-first searches limited to ``max_hops`` from the distinct ``dst`` regions, a chunk at a
    time: memory is chunk x N, never N x N.
    """
    from scipy.sparse.csgraph import dijkstra

    a = sp.coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(n, n)).tocsr()
    dst, src = np.asarray(dst, dtype=np.int64), np.asarray(src, dtype=np.int64)
    out = np.full(len(dst), max_hops, dtype=np.int64)
    order = np.argsort(dst, kind="stable")
    starts = np.unique(dst)
    for s0 in range(0, len(starts), chunk):
        rows = starts[s0:s0 + chunk]
        h = dijkstra(a, directed=False, indices=rows, unweighted=True, limit=max_hops)
        pos = np.searchsorted(rows, dst[order])
        sel = (pos < len(rows)) & (rows[np.minimum(pos, len(rows) - 1)] == dst[order])
        k = order[sel]
        v = h[pos[sel], src[k]]
        out[k] = np.where(np.isfinite(v), np.minimum(v, max_hops), max_hops).astype(np.int64)
    return out


def distance_scale(centroids: np.ndarray) -> float:
    """Typical spacing between regions: median nearest-neighbour distance (metres).

    Makes the distance encodings scale-free across cities and grid sizes.
    """
    from scipy.spatial import cKDTree

    c = np.asarray(centroids, dtype=np.float64)
    if len(c) < 2:
        return 1.0
    d, _ = cKDTree(c).query(c, k=2)
    nn = d[:, 1]
    nn = nn[nn > 0]
    s = float(np.median(nn)) if nn.size else 1.0
    return s if np.isfinite(s) and s > 0 else 1.0
