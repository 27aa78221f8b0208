"""The Manhattan-180 loader builds what a user's layers would give."""
import numpy as np
import pytest

from topt_core.benchmark import load_manhattan


@pytest.fixture(scope="module")
def manhattan(shared_data):
    return load_manhattan(shared_data)


def test_manhattan_views_geometry_and_targets(manhattan, shared_data):
    d = manhattan
    assert d.n == 180 and d.views() == ["poi", "landuse", "mobility"]
    assert d.poi_counts.shape == (180, 26) and d.landuse.shape == (180, 11)
    assert d.mobility.sum() == pytest.approx(np.load(shared_data / "hafusion" / "mob-adj.npy").sum())
    assert d.crs == "EPSG:32618"
    assert d.areas.sum() / 1e6 == pytest.approx(51.3, abs=0.2)        # README §2.1
    assert 5.8e5 < d.centroids[:, 0].min() and d.centroids[:, 0].max() < 5.95e5  # UTM 18N eastings
    assert d.adjacency.shape[0] == 2 and d.adjacency.shape[1] > 180
    assert set(d.targets) == {"crime", "checkin", "service"} and d.targets["checkin"][163] == 0


def test_manhattan_mob_dist_variant(shared_data):
    d = load_manhattan(shared_data, mobility="mob_dist", views=("mobility",))
    assert d.views() == ["mobility"] and d.mobility[179, 179] > 1.5e6
