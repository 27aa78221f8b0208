"""The sparse attention mode (issue 9): shapes, no N x N allocation, determinism, save/load, cancel, auto."""
import numpy as np
import pytest
import torch

from srel_fixtures import FAST, CountingReporter, tiny_data
from topt_core.config import resolve_attention
from topt_core.errors import ToptCancelled
from topt_core.srel.modes import sparse as SPARSE_MODE
from topt_core.srel import embed, load_model, save_model, train_srel

SPARSE = FAST.replace(attention="sparse", local_neighbours=4, od_partners=2, anchors=5)


def grid_city(n, seed=0):
    import scipy.sparse as sp

    from topt_core.data import RegionData

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n] * 250.0
    rows = rng.integers(0, n, 20 * n)
    cols = np.clip(rows + rng.integers(-3 * side, 3 * side, 20 * n), 0, n - 1)
    od = sp.coo_matrix((rng.integers(1, 9, 20 * n).astype(float), (rows, cols)), shape=(n, n)).tocsr()
    return RegionData(region_ids=np.arange(n).astype(str), centroids=xy + 5e5, areas=np.full(n, 6.25e4),
                      crs="EPSG:32618", poi_counts=rng.poisson(3.0, (n, 6)).astype(float),
                      poi_categories=[f"c{j}" for j in range(6)], landuse=rng.random((n, 3)),
                      landuse_classes=["a", "b", "c"], mobility=od).validate()


@pytest.mark.parametrize("bias", ["gaussian", "bucket", "none"])
def test_sparse_mode_trains_with_every_spatial_bias(bias):
    """Each spatial bias trains in the sparse mode (the loss falls), and the bias a local edge gets
    (distance, hops, OD flow) is the dense mode's bias for that pair, value for value."""
    from topt_core.srel.inputs import build_inputs

    data = tiny_data(n=40).validate()
    r = train_srel(data, SPARSE.replace(spatial_bias=bias))
    assert r.embeddings.shape == (40, SPARSE.embed_dim) and np.isfinite(r.embeddings).all()
    assert np.isfinite(r.history).all() and r.history[-1] < r.history[0]
    model = r.model.eval()
    with torch.no_grad():
        dense = model.attention_context(build_inputs(model, data, mode="dense"))
        sparse = model.attention_context(build_inputs(model, data, mode="sparse"))
    assert sparse.mode == "sparse" and sparse.edge_bias.shape == (sparse.dst.shape[0], SPARSE.heads)
    expected = dense.bias[:, sparse.dst, sparse.src].T                     # (E, heads) from the (heads, N, N)
    assert float(expected.std()) > 1e-3                                    # the biases are not all alike
    torch.testing.assert_close(sparse.edge_bias, expected, rtol=1e-5, atol=1e-6)


def test_sparse_inputs_are_edges_and_anchors_not_pairs():
    from topt_core.srel.inputs import build_inputs, fit_preprocessing, input_schema
    from topt_core.srel.model import SrelModel

    data = tiny_data(n=40).validate()
    model = SrelModel(SPARSE, input_schema(data, SPARSE), fit_preprocessing(data, SPARSE))
    inp = build_inputs(model, data)
    lay = inp.layout
    assert inp.mode.name == "sparse" and inp.pairs.u.dim() == 1 and inp.pairs.u.shape == lay.dst.shape
    assert lay.anchor_pairs.u.shape == (40, 5) and float(lay.anchor_log_count.exp().sum()) == pytest.approx(40)
    assert (lay.dst == lay.src).sum() == 40                       # every region attends to itself
    assert lay.dst.shape[0] < 40 * 40 / 2


def test_sparse_attention_weights_of_a_region_sum_to_one():
    from topt_core.srel.attention import RegionAttention
    from topt_core.srel.modes.sparse import SparseContext

    torch.manual_seed(0)
    att = RegionAttention(8, 2).eval()
    n = 6
    dst = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5, 5])
    src = torch.tensor([0, 1, 1, 0, 2, 3, 4, 5, 2])
    ctx = SparseContext(dst=dst, src=src, anchor_of=torch.tensor([0, 0, 0, 1, 1, 1]),
                        anchor_log_count=torch.log(torch.tensor([3.0, 3.0])))
    # with all values equal to one vector, the output is that vector exactly when the weights sum to 1
    x = torch.randn(n, 8)
    with torch.no_grad():
        att.qkv.weight[16:] = 0
        att.qkv.bias[16:] = 1.0
        out = att(x, ctx)
        expected = att.proj(torch.ones(1, 8)).expand(n, 8)
    torch.testing.assert_close(out, expected)


def test_sparse_mode_allocates_nothing_n_by_n():
    """4000 regions: an N x N float32 array would take 64 MB; no op of an epoch may allocate half of it."""
    import tracemalloc

    from torch.profiler import ProfilerActivity, profile

    n = 4000
    data = grid_city(n)
    cfg = FAST.replace(attention="sparse", epochs=1)
    tracemalloc.start()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_srel(data, cfg)
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert biggest < n * n * 4 / 2, f"an op allocated {biggest / 1e6:.0f} MB"
    assert numpy_peak < n * n * 8 / 2, f"numpy peaked at {numpy_peak / 1e6:.0f} MB"
    # the dense mode does allocate N x N (the check can fail)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_srel(grid_city(1500), FAST.replace(attention="dense", epochs=1))
    assert max(e.cpu_memory_usage for e in prof.events()) >= 1500 * 1500 * 4


def test_sparse_mode_is_deterministic_and_saves_and_loads(tmp_path):
    data = tiny_data(n=40)
    a = train_srel(data, SPARSE)
    b = train_srel(tiny_data(n=40), SPARSE)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert not np.array_equal(a.embeddings, train_srel(tiny_data(n=40), SPARSE.replace(seed=9)).embeddings)
    save_model(a, tmp_path / "m", data=data)
    np.testing.assert_array_equal(embed(load_model(tmp_path / "m"), tiny_data(n=40)), a.embeddings)


def test_sparse_training_honours_cancel():
    with pytest.raises(ToptCancelled):
        train_srel(tiny_data(n=40), SPARSE.replace(epochs=50), CountingReporter(cancel_after=3))


def test_auto_switches_to_sparse_above_the_threshold_and_says_so():
    cfg = FAST.replace(attention="auto", auto_sparse_above=30)
    assert resolve_attention(cfg, 30) == "dense" and resolve_attention(cfg, 31) == "sparse"
    rep = CountingReporter()
    train_srel(tiny_data(n=40), cfg.replace(local_neighbours=4, anchors=5), rep)
    assert any("sparse attention (auto: 40 regions > 30)" in i for i in rep.infos), rep.infos


def test_a_dense_trained_model_embeds_a_large_layer_sparsely():
    """Above the threshold ``embed`` switches to the sparse mode (and says so), exactly as a forced
    sparse mode; the sparse embedding is an approximation of the dense one: each region's nearest
    dense embedding is its own, and the distances between regions agree (another model's: r ~ 0.2)."""
    model = train_srel(tiny_data(n=40), FAST.replace(attention="auto", auto_sparse_above=100)).model
    small = embed(model, tiny_data(n=40))
    big_cfg = model.config.replace(auto_sparse_above=30, local_neighbours=4, anchors=5)
    model.config = big_cfg
    rep = CountingReporter()
    sparse = embed(model, tiny_data(n=40), rep)
    assert sparse.shape == small.shape and np.isfinite(sparse).all() and not np.array_equal(sparse, small)
    assert any("sparse attention (auto: 40 regions > 30)" in i for i in rep.infos), rep.infos
    model.config = big_cfg.replace(attention="sparse")
    np.testing.assert_array_equal(embed(model, tiny_data(n=40)), sparse)
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    # (a 6-epoch model on 40 regions: its embeddings are alike, so "nearest is its own" is too strict; a region's
    # sparse embedding is closer to its own dense one than to another region's in >= 85 % of the comparisons)
    c = unit(sparse) @ unit(small).T
    assert np.diag(c).mean() > 0.95 and (np.diag(c)[:, None] > c).mean() >= 0.85
    iu = np.triu_indices(40, 1)
    dist = lambda e: np.linalg.norm(e[:, None] - e[None], axis=-1)[iu]  # noqa: E731
    assert np.corrcoef(dist(sparse), dist(small))[0, 1] > 0.9


def test_sparse_memory_estimate_is_linear_and_refuses_what_does_not_fit(monkeypatch):
    import topt_core.srel.memory as M
    from topt_core.errors import ToptResourceError

    cfg = FAST.replace(attention="sparse", anchors=64)
    small, big = M.estimate_sparse_memory(10_000, cfg), M.estimate_sparse_memory(100_000, cfg)
    base = SPARSE_MODE.BASE_BYTES
    assert 8 < (big - base) / (small - base) < 12                               # ~linear, not ~100x
    assert M.estimate_dense_memory(100_000, cfg) > 50 * big
    monkeypatch.setattr(M, "available_memory", lambda device="cpu": 10 * 2 ** 20)
    with pytest.raises(ToptResourceError, match="sparse attention"):
        train_srel(tiny_data(n=40), SPARSE)


def test_small_layers_get_the_exact_losses_in_sparse_mode():
    """Below the sample sizes the sampled SSL losses are the dense ones, so only attention differs."""
    from topt_core.srel.inputs import build_inputs, fit_preprocessing, input_schema
    from topt_core.srel.losses import build_targets, srel_loss
    from topt_core.srel.model import SrelModel

    data = tiny_data(n=40).validate()
    model = SrelModel(SPARSE, input_schema(data, SPARSE), fit_preprocessing(data, SPARSE)).eval()
    emb = torch.randn(40, SPARSE.embed_dim)
    dense_t = build_targets(data, model, "cpu", build_inputs(model, data, mode="dense"))
    sparse_t = build_targets(data, model, "cpu", build_inputs(model, data, mode="sparse"))
    d, dp = srel_loss(model, emb, dense_t)
    s, sp_ = srel_loss(model, emb, sparse_t)
    for view in ("poi", "landuse", "mobility", "extra"):
        assert sp_[view] == pytest.approx(dp[view], rel=1e-4, abs=1e-5), view


def test_device_side_early_stopping_keeps_the_same_best_weights(monkeypatch):
    """The GPU path (no host round trip per epoch) tracks the best epoch like the CPU path."""
    import topt_core.srel.train as T

    data = tiny_data(n=30)
    cpu = train_srel(data, FAST.replace(epochs=12))
    real = T._BestState
    monkeypatch.setattr(T, "_BestState", lambda model, config, device: real(model, config, device, device_side=True))
    side = train_srel(tiny_data(n=30), FAST.replace(epochs=12))
    np.testing.assert_allclose(side.embeddings, cpu.embeddings, rtol=1e-6, atol=1e-6)
    assert side.history == pytest.approx(cpu.history)
