"""The published protocols reproduce GURPP's released embedding figures (README §6)."""
import json

import numpy as np
import pytest

from topt_core.errors import ToptConfigError, ToptDataError
from topt_core.evaluate import kmeans_clustering_scores, make_folds, ridge_kfold


@pytest.fixture(scope="module")
def gurpp(shared_data):
    emb = np.load(shared_data / "gurpp" / "emb.npy")
    crime = np.load(shared_data / "hafusion" / "crime_counts.npy").reshape(-1)
    check = np.load(shared_data / "hafusion" / "check_counts.npy").reshape(-1)
    cd = json.loads((shared_data / "mvure" / "mh_cd.json").read_text())
    labels = np.array([cd[str(i)] for i in range(len(emb))])
    return emb, crime, check, labels


def test_gurpp_crime_mvure_5fold(gurpp):
    emb, crime, _, _ = gurpp
    m, oof = ridge_kfold(emb, crime, "mvure-5fold")
    assert m["mae"] == pytest.approx(69.232, abs=5e-3)
    assert m["rmse"] == pytest.approx(93.270, abs=5e-3)
    assert m["r2"] == pytest.approx(0.602, abs=5e-4)
    assert oof.min() >= 0


def test_gurpp_checkin_mvure_5fold(gurpp):
    emb, _, check, _ = gurpp
    m, _ = ridge_kfold(emb, check, "mvure-5fold")
    assert m["r2"] == pytest.approx(0.803, abs=5e-4)
    assert m["mae"] == pytest.approx(246.911, abs=5e-3)


def test_gurpp_landuse_clustering(gurpp):
    emb, _, _, labels = gurpp
    s = kmeans_clustering_scores(emb, labels)
    assert s["nmi"] == pytest.approx(0.484, abs=5e-4)
    assert s["ari"] == pytest.approx(0.210, abs=5e-4)


def test_folds_follow_the_protocols():
    folds = make_folds(180, "hafusion-ny")
    assert len(folds) == 10 and np.array_equal(folds[0][1], np.arange(18))  # no shuffle
    shuffled = make_folds(77, "hafusion-chi")
    assert len(shuffled) == 25 and not np.array_equal(shuffled[0][1], np.arange(len(shuffled[0][1])))
    with pytest.raises(ToptConfigError):
        make_folds(10, "bogus")
    with pytest.raises(ToptDataError):
        make_folds(5, "hafusion-ny")


def test_ridge_kfold_refuses_mismatched_lengths():
    with pytest.raises(ToptDataError, match="one target per region"):
        ridge_kfold(np.zeros((10, 2)), np.zeros(9))
