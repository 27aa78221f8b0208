"""Attention links and influence fields (issue 11): counts, weights, ids, both attention modes, no N x N."""
import numpy as np
import pytest

from srel_fixtures import FAST, tiny_data
from test_sparse import SPARSE, grid_city
from topt_core.srel import train_srel
from topt_core.srel.links import attention_links

LAYERS2 = FAST.replace(layers=2)


def _check_links(links, n, k):
    assert len(links.weight) <= n * k
    assert np.all(links.weight > 0) and np.all(links.weight <= 1)
    assert np.all(links.source != links.target)                      # a region is not its own partner
    assert links.source.min() >= 0 and links.source.max() < n and links.target.max() < n
    per_region = np.bincount(links.target, weights=links.weight, minlength=n)
    assert np.all(per_region <= 1 + 1e-6)                            # top-k of a softmax row: at most 1
    assert np.all(np.bincount(links.target, minlength=n) <= k)
    for t in range(n):                                               # ranks 1..k by falling weight
        mine = links.target == t
        order = np.argsort(links.rank[mine])
        assert list(links.rank[mine][order]) == list(range(1, mine.sum() + 1))
        assert np.all(np.diff(links.weight[mine][order]) <= 1e-9)
    assert links.attn_in.shape == links.attn_dist_m.shape == links.centrality.shape == (n,)
    assert np.all(links.attn_in >= 0) and np.all(links.attn_dist_m >= 0)


@pytest.mark.parametrize("cfg,mode", [(LAYERS2, "dense"), (SPARSE, "sparse")])
def test_links_have_top_k_partners_with_weights_in_0_1_and_rows_at_most_1(cfg, mode):
    data = tiny_data(n=40)
    r = train_srel(data, cfg)
    links = attention_links(r.model, data, k=5)
    assert links.mode == mode
    _check_links(links, 40, 5)
    if mode == "dense":
        assert len(links.weight) == 40 * 5                          # a dense softmax row is never 0
        assert "2 layers" in links.averaged and "2 heads" in links.averaged
    c = data.centroids
    np.testing.assert_allclose(links.distance_m, np.hypot(*(c[links.source] - c[links.target]).T), rtol=1e-6)
    dmax = np.hypot(*(c.max(0) - c.min(0)))
    assert np.all(links.attn_dist_m <= dmax + 1e-6)


def test_dense_attention_received_sums_to_the_off_diagonal_mass():
    """Every region's attention row sums to 1, so attn_in summed over regions is N minus the self part."""
    data = tiny_data(n=30)
    links = attention_links(train_srel(data, FAST).model, data, k=29)
    total_out = np.bincount(links.target, weights=links.weight, minlength=30)   # all partners (k = N - 1)
    assert links.attn_in.sum() == pytest.approx(total_out.sum(), rel=1e-5)
    assert np.all(total_out < 1) and np.all(total_out > 0)


def test_od_flag_marks_pairs_with_an_observed_flow():
    data = tiny_data(n=40)
    links = attention_links(train_srel(data, FAST).model, data, k=5)
    m = data.mobility.toarray()
    expect = (m[links.target, links.source] + m[links.source, links.target]) > 0
    np.testing.assert_array_equal(links.od_flow, expect)


def test_centrality_is_the_degree_the_model_used():
    from topt_core.srel.inputs import build_inputs

    data = tiny_data(n=40)
    model = train_srel(data, FAST).model
    links = attention_links(model, data, k=3)
    np.testing.assert_array_equal(links.centrality, build_inputs(model, data).degree.numpy())


def test_restart_ensembles_average_their_members_links():
    data = tiny_data(n=30)
    r = train_srel(data, FAST.replace(restarts=2))
    links = attention_links(r.model, data, k=4)
    assert "2 restarts" in links.averaged
    _check_links(links, 30, 4)


def test_sparse_links_of_4000_regions_allocate_nothing_n_by_n():
    import tracemalloc

    n = 4000
    data = grid_city(n)
    model = train_srel(data, FAST.replace(attention="sparse", epochs=1)).model
    tracemalloc.start()
    links = attention_links(model, data, k=5)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * n * 8 / 4, f"numpy peaked at {peak / 1e6:.0f} MB"
    assert links.mode == "sparse" and len(links.weight) <= 5 * n and len(links.weight) > 4 * n


def test_a_model_without_attention_layers_is_refused_with_a_reason():
    data = tiny_data(n=20)
    with pytest.raises(ValueError, match="no attention layers"):
        attention_links(train_srel(data, FAST.replace(layers=0)).model, data)
