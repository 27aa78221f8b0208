"""View preprocessing is robust to outliers without knowing where they are."""
import numpy as np

from srel_fixtures import FAST, tiny_data
from topt_core.srel import views as V
from topt_core.srel.model import fit_preprocessing


def test_od_artefact_is_winsorised_and_features_bounded():
    data = tiny_data().validate()            # region 23 has a 1e6 self-loop
    stats = fit_preprocessing(data, FAST)
    assert stats["mobility.fence"][0] < 1e3  # the bulk is ~3 trips per pair
    dist_units = np.ones((data.n, data.n))
    feats = V.features(data, stats, FAST, dist_units)
    for name, f in feats.items():
        assert np.isfinite(f).all() and np.abs(f).max() <= V.CLIP_LINEAR, name
    w = V.od_target(data, float(stats["mobility.fence"][0]))
    assert w.max() < 100 * np.median(w[w > 0])


def test_robust_scaling_handles_constant_and_sparse_columns():
    x = np.zeros((10, 3))
    x[:, 1] = 7.0
    x[0, 2] = 100.0
    c, s = V.robust_fit(x)
    assert np.all(s > 0)
    z = V.robust_apply(x, c, s)
    assert np.isfinite(z).all() and np.abs(z).max() <= V.CLIP


def test_summary_mobility_features_do_not_depend_on_n():
    small, big = tiny_data(n=12).validate(), tiny_data(n=40).validate()
    a = fit_preprocessing(small, FAST)["mobility.center"].shape
    b = fit_preprocessing(big, FAST)["mobility.center"].shape
    assert a == b == (V.mobility_feature_dim(FAST, 0),)


def test_similarity_target_is_row_cosine():
    data = tiny_data().validate()
    t = V.similarity_target(data, "landuse")
    x = data.landuse / np.linalg.norm(data.landuse, axis=1, keepdims=True)
    np.testing.assert_allclose(t, x @ x.T, atol=1e-6)
