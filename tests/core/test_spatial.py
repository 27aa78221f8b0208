import numpy as np
import pytest

from topt_core import spatial
from topt_core.errors import ToptConfigError, ToptDataError


def test_pairwise_distances_are_metric():
    d = spatial.pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 10.0]]))
    assert d.shape == (3, 3) and d.dtype == np.float32
    np.testing.assert_allclose(d[0, 1], 5.0)
    np.testing.assert_allclose(d, d.T)
    assert np.all(np.diag(d) == 0)


def test_knn_edges_symmetric_without_self_loops():
    rng = np.random.default_rng(1)
    e = spatial.knn_edges(rng.random((15, 2)) * 100, k=3)
    pairs = set(map(tuple, e.T.tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    assert all(i != j for i, j in pairs)
    assert spatial.degrees(e, 15).min() >= 3


def test_touching_graph_gets_knn_for_isolated_regions():
    c = np.array([[0, 0], [1, 0], [2, 0], [50, 50]], dtype=float)
    adj = np.array([[0, 1], [1, 2]])
    e = spatial.neighbour_edges(c, adj, "auto", k=1)
    deg = spatial.degrees(e, 4)
    assert deg[3] >= 1 and deg[0] == 1 and deg[1] == 2
    # knn mode ignores the polygons
    e2 = spatial.neighbour_edges(c, adj, "knn", k=2)
    assert (0, 2) in set(map(tuple, e2.T.tolist())) and (0, 2) not in set(map(tuple, e.T.tolist()))


def test_touch_mode_without_adjacency_refused():
    with pytest.raises(ToptDataError, match="adjacency"):
        spatial.neighbour_edges(np.zeros((3, 2)), None, "touch")
    with pytest.raises(ToptConfigError):
        spatial.neighbour_edges(np.zeros((3, 2)), None, "bogus")


def test_hop_counts_on_a_path_clip_and_unreachable():
    e = spatial.symmetrise(np.array([[0, 1, 2], [1, 2, 3]]), 5)
    h = spatial.hop_counts(e, 5, max_hops=2)
    assert h[0, 1] == 1 and h[0, 2] == 2 and h[0, 3] == 2  # 3 hops clipped to 2
    assert h[0, 4] == 2  # unreachable -> max_hops
    assert h[2, 2] == 0


def test_distance_scale_is_median_nearest_neighbour():
    c = np.array([[0, 0], [100, 0], [300, 0], [600, 0]], dtype=float)
    assert spatial.distance_scale(c) == pytest.approx(150.0)  # nn: 100, 100, 200, 300
    assert spatial.distance_scale(np.zeros((3, 2))) == 1.0
