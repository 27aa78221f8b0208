"""Counting, weighing and validating the region views (topt_core.joins and each view's module)."""
import numpy as np
import pytest

from topt_core.errors import ToptDataError
from topt_core.joins import adjacency_from_pairs, clean_weights, id_string, index_of, normalise_ids
from topt_core.views.extra import numeric_table
from topt_core.views.landuse import shares as landuse_shares
from topt_core.views.mobility import od_matrix
from topt_core.views.poi import count as poi_counts


def test_id_string_canonical_forms():
    assert id_string(12) == "12"
    assert id_string(12.0) == "12"
    assert id_string(np.int64(7)) == "7"
    assert id_string(" a7 ") == "a7"
    assert id_string(2.5) == "2.5"
    for null in (None, float("nan"), "", "NULL"):
        assert id_string(null) is None


def test_normalise_ids_refuses_null():
    assert normalise_ids([1, 2.0, "x"]).tolist() == ["1", "2", "x"]
    with pytest.raises(ToptDataError, match="empty id"):
        normalise_ids([1, None, 3])


def test_index_of_matches_int_and_float_ids():
    ids = normalise_ids([10, 11, 12])
    assert index_of([12, 10.0, "11", 99, None], ids).tolist() == [2, 0, 1, -1, -1]


def test_poi_counts_counts_sorted_categories_and_reports_outside_and_null():
    idx = [0, 0, 1, -1, 2, 1, 2]
    cats = ["shop", "food", "shop", "shop", None, "food", float("nan")]
    counts, names, outside, null, rep = poi_counts(idx, cats, 3)
    assert names == ["food", "shop"]
    assert counts.tolist() == [[1, 1], [1, 1], [0, 0]]
    assert outside == 1 and null == 2 and rep.used == 4
    msgs = " ".join(rep.messages())
    assert "1 of 7 POI points lie outside" in msgs and "2 of 7 POI points have an empty category" in msgs


def test_poi_counts_fixed_order_and_integer_categories():
    counts, names, _, null, _ = poi_counts([0, 1, 1], [3, 1, 9], 2, categories_order=["1", "3"])
    assert names == ["1", "3"] and counts.tolist() == [[0, 1], [1, 0]] and null == 1


def test_od_matrix_sums_duplicates_and_drops_unknown():
    m, rep = od_matrix([0, 0, 1, -1, 2], [1, 1, 0, 1, 5], [2, 3, 1, 7, 4], 3)
    assert m.shape == (3, 3)
    assert m.toarray().tolist() == [[0, 5, 0], [1, 0, 0], [0, 0, 0]]
    assert rep.outside == 2 and rep.used == 3


def test_od_matrix_unit_weights_and_null_weights():
    m, rep = od_matrix([0, 1, 1], [1, 0, 0], None, 2)
    assert m.toarray().tolist() == [[0, 1], [2, 0]]
    m, rep = od_matrix([0, 1], [1, 0], [None, 4], 2)
    assert m.toarray().tolist() == [[0, 0], [4, 0]] and rep.bad_weight == 1
    assert "non-numeric weight" in " ".join(rep.messages())


@pytest.mark.parametrize("weights,match", [([1, -2], "negative"), ([1, 5e13], "above"),
                                         (["a", 1], "non-numeric")])
def test_od_matrix_refuses_bad_weights(weights, match):
    with pytest.raises(ToptDataError, match=match):
        od_matrix([0, 1], [1, 0], weights, 2)


def test_clean_weights_reports_nan_as_unusable():
    w, ok = clean_weights([1.0, float("nan"), None, 2], 4, "x")
    assert ok.tolist() == [True, False, False, True]


def test_landuse_shares_covered_and_region_area():
    idx = [0, 0, 1, -1, 1]
    cls = ["res", "park", "res", "res", None]
    area = [30.0, 10.0, 50.0, 99.0, 5.0]
    shares, names, rep = landuse_shares(idx, cls, area, 3)
    assert names == ["park", "res"]
    np.testing.assert_allclose(shares, [[0.25, 0.75], [0, 1], [0, 0]])
    assert rep.outside == 1 and rep.null_key == 1
    shares, _, _ = landuse_shares(idx, cls, area, 3, region_areas=[80.0, 100.0, 10.0])
    np.testing.assert_allclose(shares, [[0.125, 0.375], [0, 0.5], [0, 0]])


def test_numeric_table_fills_null_with_zero_and_refuses_negative():
    t, names, n_null = numeric_table({"a": [1, None, 3], "b": [0, 2, float("nan")]}, 3)
    assert names == ["a", "b"] and t.tolist() == [[1, 0], [0, 2], [3, 0]] and n_null == 2
    with pytest.raises(ToptDataError, match="negative"):
        numeric_table({"a": [1, -1, 3]}, 3)


def test_adjacency_from_pairs_symmetric_dedup_no_self():
    e = adjacency_from_pairs([0, 1, 2, 0], [1, 0, 2, 2], 3)
    assert sorted(map(tuple, e.T.tolist())) == [(0, 1), (0, 2), (1, 0), (2, 0)]
    with pytest.raises(ToptDataError):
        adjacency_from_pairs([0], [3], 3)


def test_region_data_subset_reorders_views_od_and_adjacency():
    import scipy.sparse as sp

    from topt_core.data import RegionData

    d = RegionData(region_ids=np.array(["a", "b", "c"]), centroids=np.arange(6.0).reshape(3, 2),
                   areas=np.array([1.0, 2.0, 3.0]), poi_counts=np.array([[1.0], [2.0], [3.0]]),
                   mobility=sp.csr_matrix(np.array([[0, 1, 2], [3, 0, 4], [5, 6, 0]], dtype=float)),
                   adjacency=np.array([[0, 1, 1, 2], [1, 0, 2, 1]])).validate()
    s = d.subset([2, 0])
    assert s.region_ids.tolist() == ["c", "a"] and s.areas.tolist() == [3.0, 1.0]
    assert s.poi_counts[:, 0].tolist() == [3.0, 1.0]
    assert s.mobility.toarray().tolist() == [[0, 5], [2, 0]]
    assert s.adjacency.shape == (2, 0)        # a-b and b-c: b is not kept
    s = d.subset([1, 2])
    assert sorted(map(tuple, s.adjacency.T.tolist())) == [(0, 1), (1, 0)]
