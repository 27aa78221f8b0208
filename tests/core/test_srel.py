"""Stage 1 (SREL): shapes, encodings, determinism, labels, cancel, memory refusal."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from srel_fixtures import FAST, CountingReporter, tiny_data
from topt_core.errors import ToptCancelled, ToptResourceError
from topt_core.srel import SrelModel, embed, estimate_dense_memory, train_srel

SUBSETS = [("poi",), ("landuse",), ("mobility",), ("extra",), ("poi", "landuse"), ("poi", "mobility"),
           ("landuse", "mobility", "extra"), ("poi", "landuse", "mobility", "extra")]


@pytest.mark.parametrize("views", SUBSETS, ids=["+".join(v) for v in SUBSETS])
def test_every_view_subset_trains(views):
    data = tiny_data(views=views)
    r = train_srel(data, FAST)
    assert r.embeddings.shape == (data.n, FAST.embed_dim) and r.embeddings.dtype == np.float32
    assert np.isfinite(r.embeddings).all() and r.embeddings.std() > 0
    assert len(r.history) == r.epochs_run == FAST.epochs and all(np.isfinite(r.history))
    own = [v for v in ("poi", "landuse", "mobility", "extra") if v in views]
    sparse = "poi" not in views or np.median(data.poi_counts.sum(1)) < 10
    derived = (["geometry"] if sparse else []) + (["context"] if "poi" in views and sparse else [])
    assert isinstance(r.model, SrelModel) and r.model.views == own + derived


@pytest.mark.parametrize("bias", ["gaussian", "bucket", "none"])
@pytest.mark.parametrize("centrality", [True, False])
def test_spatial_bias_and_centrality_modes(bias, centrality):
    cfg = FAST.replace(spatial_bias=bias, centrality=centrality)
    r = train_srel(tiny_data(), cfg)
    assert r.embeddings.shape == (24, cfg.embed_dim) and np.isfinite(r.embeddings).all()
    assert (r.model.spatial is None) == (bias == "none")
    assert (r.model.centrality is None) == (not centrality)


def test_default_config_embeds_144_dims():
    from topt_core.config import SrelConfig

    cfg = SrelConfig(epochs=2, restarts=1, device="cpu", threads=1)      # every width at its default
    r = train_srel(tiny_data(n=20), cfg)
    assert r.embeddings.shape == (20, 144)


def test_mobility_rows_mode_trains():
    r = train_srel(tiny_data(), FAST.replace(mobility_features="rows"))
    assert r.model.schema["dims"]["mobility"] == 48 and r.model.schema["region_ids"][0] == "r0"


def test_same_seed_bit_identical_and_other_seed_differs():
    a = train_srel(tiny_data(), FAST).embeddings
    b = train_srel(tiny_data(), FAST).embeddings
    c = train_srel(tiny_data(), FAST.replace(seed=7)).embeddings
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_training_leaves_caller_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_srel(tiny_data(n=12), FAST.replace(epochs=2))
    assert torch.equal(torch.rand(3), expected)


def test_labels_are_never_used():
    with_y = train_srel(tiny_data(targets=True), FAST).embeddings
    without = train_srel(tiny_data(targets=False), FAST).embeddings
    other_y = tiny_data(targets=True)
    other_y.targets = {"crime": np.arange(24.0), "service": np.ones(24)}
    assert np.array_equal(with_y, without)
    assert np.array_equal(with_y, train_srel(other_y, FAST).embeddings)


def test_returned_embeddings_are_eval_mode_and_match_embed():
    data = tiny_data()
    r = train_srel(data, FAST.replace(dropout=0.5))
    assert not r.model.training
    np.testing.assert_array_equal(embed(r.model, data), r.embeddings)


def test_spatial_bias_changes_the_output():
    data = tiny_data()
    r = train_srel(data, FAST)
    base = embed(r.model, data)
    with torch.no_grad():
        r.model.spatial.mlp[-1].bias.add_(torch.tensor([3.0, -3.0]))
        r.model.spatial.mlp[-1].weight.mul_(5.0)
    assert not np.allclose(embed(r.model, data), base, atol=1e-4)
    # moving one region changes everyone's embedding through the distance bias only
    moved = tiny_data()
    moved.centroids = moved.centroids.copy()
    moved.centroids[0] += 3000.0
    assert not np.allclose(embed(r.model, moved), embed(r.model, data), atol=1e-5)


def test_bucket_bias_changes_the_output():
    data = tiny_data()
    r = train_srel(data, FAST.replace(spatial_bias="bucket"))
    base = embed(r.model, data)
    with torch.no_grad():
        r.model.spatial.hops.weight.normal_(0, 3.0)
    assert not np.allclose(embed(r.model, data), base, atol=1e-4)


def test_reports_device_progress_and_reason():
    rep = CountingReporter()
    r = train_srel(tiny_data(), FAST, rep)
    assert any("cpu" in m and "CPU requested" in m for m in rep.infos)
    assert rep.progress[-1] == pytest.approx(100.0) and len(rep.progress) == FAST.epochs
    assert r.device.device == "cpu" and r.seconds > 0


def test_cancel_raises_after_k_checks():
    rep = CountingReporter(cancel_after=3)
    with pytest.raises(ToptCancelled):
        train_srel(tiny_data(), FAST.replace(epochs=50), rep)
    assert rep.calls == 4 and len(rep.progress) == 3


def test_early_stopping_on_self_supervised_loss():
    r = train_srel(tiny_data(), FAST.replace(epochs=500, patience=3, min_delta=0.5))
    assert r.stopped_early and r.epochs_run < 500


def test_memory_estimate_grows_quadratically():
    small, big = estimate_dense_memory(1000, FAST), estimate_dense_memory(4000, FAST)
    assert big > 10 * (small - 200 * 2 ** 20)
    assert estimate_dense_memory(180, FAST.replace(spatial_bias="gaussian")) > \
        estimate_dense_memory(180, FAST.replace(spatial_bias="none"))


def test_huge_n_refused_before_allocating(monkeypatch):
    import topt_core.srel.train as T

    def boom(*a, **k):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(T, "fit_preprocessing", boom)
    data = tiny_data(n=30)
    with pytest.raises(ToptResourceError, match=r"exceed the dense-attention limit.*GB.*fewer regions"):
        train_srel(data, FAST.replace(max_dense_regions=20))
    import topt_core.srel.memory as M

    monkeypatch.setattr(M, "available_memory", lambda device="cpu": 10 * 2 ** 20)
    with pytest.raises(ToptResourceError, match=r"needs about .* GB but only .* GB"):
        train_srel(data, FAST)


def test_available_memory_falls_back_to_proc_meminfo(monkeypatch):
    import builtins

    import topt_core.srel.memory as M

    real_import = builtins.__import__

    def no_psutil(name, *a, **k):
        if name == "psutil":
            raise ImportError("no psutil inside QGIS")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    avail = M.available_memory("cpu")
    with open("/proc/meminfo", encoding="ascii") as f:
        expected = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    assert avail is not None and abs(avail - expected) < 0.2 * expected     # read from /proc/meminfo


def test_importing_srel_package_does_not_import_torch():
    code = "import sys, topt_core, topt_core.srel, topt_core.spatial, topt_core.checkpoint; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_restores_caller_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_srel(tiny_data(n=12), FAST.replace(epochs=2, threads=0))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
