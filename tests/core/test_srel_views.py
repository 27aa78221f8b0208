"""View preprocessing is robust to outliers without knowing where they are."""
import numpy as np

from srel_fixtures import FAST, tiny_data
from topt_core import spatial, views
from topt_core.srel.inputs import fit_preprocessing, input_schema
from topt_core.views import mobility, scaling


def test_od_artefact_is_winsorised_and_features_bounded():
    data = tiny_data().validate()            # region 23 has a 1e6 self-loop
    stats = fit_preprocessing(data, FAST)
    assert stats["mobility.fence"][0] < 1e3  # the bulk is ~3 trips per pair
    geometry = spatial.PairGeometry(data.centroids, float(stats["spacing"][0]))
    schema = input_schema(data, FAST)
    for view in views.present(data):
        f = view.features(data, stats, FAST, geometry, schema)
        assert np.isfinite(f).all() and np.abs(f).max() <= scaling.CLIP_LINEAR, view.name
    w = mobility.od_target(data, float(stats["mobility.fence"][0]))
    assert w.max() < 100 * np.median(w[w > 0])


def test_robust_scaling_handles_constant_and_sparse_columns():
    x = np.zeros((10, 3))
    x[:, 1] = 7.0
    x[0, 2] = 100.0
    c, s = scaling.robust_fit(x)
    assert np.all(s > 0)
    z = scaling.robust_apply(x, c, s)
    assert np.isfinite(z).all() and np.abs(z).max() <= scaling.CLIP


def test_summary_mobility_features_do_not_depend_on_n():
    small, big = tiny_data(n=12).validate(), tiny_data(n=40).validate()
    a = fit_preprocessing(small, FAST)["mobility.center"].shape
    b = fit_preprocessing(big, FAST)["mobility.center"].shape
    assert a == b == (mobility.feature_dim(FAST, 0),)


def test_similarity_target_is_row_cosine():
    data = tiny_data().validate()
    t = views.get("landuse").similarity_target(data)
    x = data.landuse / np.linalg.norm(data.landuse, axis=1, keepdims=True)
    np.testing.assert_allclose(t, x @ x.T, atol=1e-6)


def test_largest_distance_without_a_pair_matrix_equals_the_pair_maximum():
    rng = np.random.default_rng(3)
    c = rng.normal(size=(300, 2)) * [5000, 800]
    assert spatial.max_distance(c) == spatial.pairwise_distances(c, np.float64).max()
    line = np.stack([np.arange(100.0), np.zeros(100)], 1)        # collinear: no convex hull
    assert spatial.max_distance(line) == 99.0
