"""Property-based fuzzing of the engine (issue 6): random small, often broken inputs must give finite
results of the right shape or the project's own ToptError -- never any other exception."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topt_core.data import RegionData
from topt_core.errors import ToptError
from tests.tiny_encoder import source as tiny_source

pytestmark = pytest.mark.hostile

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
VALUES = st.sampled_from([0.0, 0.0, 1.0, 2.0, 7.0, 1e6, np.nan, -1.0, np.inf])


def matrix(draw, rows, cols, clean_p):
    if draw(st.floats(0, 1)) < clean_p:
        return np.asarray(draw(st.lists(st.sampled_from([0.0, 1.0, 3.0, 10.0]), min_size=rows * cols,
                                        max_size=rows * cols)), dtype=float).reshape(rows, cols)
    return np.asarray(draw(st.lists(VALUES, min_size=rows * cols, max_size=rows * cols)), dtype=float).reshape(
        rows, cols)


@st.composite
def region_data(draw, clean_p=0.6):
    n = draw(st.integers(0, 9))
    ids = draw(st.lists(st.sampled_from(["1", "2", "3", "a", "b", "7", "8", "9", "10", "11", "12"]),
                        min_size=n, max_size=n)) if draw(st.booleans()) else [str(i) for i in range(n)]
    cents = matrix(draw, n, 2, 0.9) * 100.0 if n else np.zeros((0, 2))
    data = RegionData(region_ids=np.asarray(ids, dtype=object), centroids=cents, areas=np.full(n, 1e4),
                      crs="EPSG:32618")
    if draw(st.booleans()):
        data.poi_counts = matrix(draw, n, draw(st.integers(1, 4)), clean_p)
    if draw(st.booleans()):
        data.mobility = sp.csr_matrix(matrix(draw, n, n, clean_p)) if n else sp.csr_matrix((0, 0))
    if draw(st.booleans()):
        data.extra = matrix(draw, n, draw(st.integers(1, 3)), clean_p)
    if draw(st.booleans()) and n:
        data.targets = {"y": matrix(draw, n, 1, 0.5)[:, 0]}
    return data


@st.composite
def valid_region_data(draw):
    """Data that must be accepted: 2-9 regions, unique ids, finite centroids, POI counts with a non-zero."""
    n = draw(st.integers(2, 9))
    data = RegionData(region_ids=np.asarray([f"r{i}" for i in range(n)], dtype=object),
                      centroids=matrix(draw, n, 2, 1.0) * 100.0, areas=np.full(n, 1e4), crs="EPSG:32618")
    data.poi_counts = matrix(draw, n, draw(st.integers(1, 4)), 1.0)
    data.poi_counts[0, 0] = 1.0
    if draw(st.booleans()):
        data.mobility = sp.csr_matrix(matrix(draw, n, n, 1.0))
    return data


def _only_topt_errors(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except ToptError:
        return None


def test_validate_returns_clean_data_or_topt_error():
    accepted = []

    @FUZZ
    @given(st.one_of(region_data(clean_p=0.4), valid_region_data()))
    def check(data):
        out = _only_topt_errors(data.validate)
        accepted.append(out is not None)
        if out is not None:
            assert out.n >= 2 and len(set(out.region_ids)) == out.n
            for arr in (out.poi_counts, out.extra, out.landuse):
                assert arr is None or (np.isfinite(arr).all() and arr.shape[0] == out.n)
            assert out.mobility is None or np.isfinite(out.mobility.data).all()
            assert out.views()

    check()
    # refusing everything would pass the checks above: a share of the examples must be clean data
    assert sum(accepted) >= 0.05 * len(accepted), f"{sum(accepted)} of {len(accepted)} examples accepted"


@FUZZ
@given(st.data())
def test_view_builders(d):
    from topt_core import joins
    from topt_core.views import mobility as mobility_view
    from topt_core.views import poi as poi_view

    n = d.draw(st.integers(0, 6))
    p = d.draw(st.integers(0, 12))
    idx = d.draw(st.lists(st.integers(-1, n + 1), min_size=p, max_size=p))
    cats = d.draw(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "", "NULL", 3, 3.0, float("nan")])),
                           min_size=p, max_size=p))
    w = d.draw(st.one_of(st.none(), st.lists(st.one_of(st.none(), VALUES, st.just("x")), min_size=p, max_size=p)))
    res = _only_topt_errors(poi_view.count, idx, cats, n, weights=w)
    if res is not None:
        counts = res[0]
        assert counts.shape == (n, len(res[1])) and np.isfinite(counts).all() and (counts >= 0).all()
    dst = d.draw(st.lists(st.integers(-1, n + 1), min_size=p, max_size=p))
    res = _only_topt_errors(mobility_view.od_matrix, idx, dst, w, n)
    if res is not None:
        assert res[0].shape == (n, n) and np.isfinite(res[0].data).all()
    ids = d.draw(st.lists(st.one_of(st.none(), st.integers(-3, 20), st.sampled_from(["12", "12.0", " 4 ", "x"]),
                                    st.floats(allow_nan=True)), min_size=n, max_size=n))
    res = _only_topt_errors(joins.normalise_ids, ids)
    if res is not None:
        assert len(res) == n and all(isinstance(x, str) and x for x in res)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(region_data(clean_p=0.8), st.sampled_from(["gaussian", "bucket", "none"]), st.integers(1, 2))
def test_train_srel_finite_embeddings_or_topt_error(data, bias, epochs):
    from topt_core.config import SrelConfig
    from topt_core.srel import train_srel

    cfg = SrelConfig(epochs=epochs, embed_dim=4, hidden_dim=8, heads=2, layers=1, spatial_bias=bias, device="cpu",
                     threads=1, knn=2)
    res = _only_topt_errors(train_srel, data, cfg)
    if res is not None:
        assert res.embeddings.shape == (data.n, 4)
        assert np.isfinite(res.embeddings).all()


@FUZZ
@given(st.data())
def test_ridge_kfold_finite_or_topt_error(d):
    from topt_core.evaluate import ridge_kfold

    n = d.draw(st.integers(0, 14))
    k = d.draw(st.integers(1, 3))
    emb = matrix(d.draw, n, k, 0.7)
    y = matrix(d.draw, n, 1, 0.5)[:, 0]
    protocol = d.draw(st.sampled_from(["mvure-5fold", "hafusion-ny", "nope"]))
    res = _only_topt_errors(ridge_kfold, emb, y, protocol)
    if res is not None:
        metrics, oof = res
        assert oof.shape == (n,) and np.isfinite(oof).all()
        assert all(np.isfinite(v) for v in metrics.values()), metrics


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_run_prompt4re_finite_or_topt_error(d):
    from topt_core.config import PromptConfig
    from topt_core.prompt import run_prompt4re

    n = d.draw(st.integers(2, 10))
    data = RegionData(region_ids=np.asarray([str(i) for i in range(n)]),
                      centroids=np.stack([np.arange(n) * 300.0, np.zeros(n)], 1), areas=np.full(n, 9e4),
                      crs="EPSG:32618", poi_counts=matrix(d.draw, n, 2, 1.0) + 1.0, poi_categories=["food", "shop"])
    emb = matrix(d.draw, n, 3, 0.8)
    y = matrix(d.draw, n, 1, 0.4)[:, 0]
    cfg = PromptConfig(text_encoder=tiny_source("bert"), epochs=2, folds=2, inner_splits=1, device="cpu", threads=1,
                       text_rank=2)
    res = _only_topt_errors(run_prompt4re, emb, data, y, "y", cfg)
    if res is not None:
        assert res.predictions.shape == (n,) and np.isfinite(res.predictions).all()
        assert all(np.isfinite(v) for v in res.metrics.values()), res.metrics
