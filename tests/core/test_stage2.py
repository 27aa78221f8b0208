"""Stage 2's stacked routes (issue 10): honest use of labelled neighbours, intervals, spatial folds, texts."""
import numpy as np
import pytest

from topt_core.config import PromptConfig

CFG = PromptConfig(protocol="random", folds=5, inner_splits=3, device="cpu", seed=3)


def smooth_problem(n=240, seed=0, field_weight=2.0, noise=0.3):
    """Embeddings that explain part of y; a smooth spatial field (unknown to them) the rest."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10_000, (n, 2))
    emb = rng.normal(size=(n, 8))
    field = np.sin(xy[:, 0] / 1500) + np.cos(xy[:, 1] / 1700)
    y = 5 + emb[:, 0] + field_weight * field + noise * rng.normal(size=n)
    text = rng.normal(size=(n, 3, 6))
    return emb, text, y, xy


def r2(y, p):
    return 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)


def test_the_neighbour_term_never_sees_the_test_fold_labels():
    """Replace one outer test fold's labels by noise: that fold's predictions must not move at all."""
    from topt_core.prompt.train import fit_predict

    emb, text, y, xy = smooth_problem()
    base = fit_predict(emb, text, y, CFG, coords=xy)
    _, te = base["folds"][2]
    noisy = y.copy()
    noisy[te] = np.random.default_rng(9).normal(100, 50, len(te))
    again = fit_predict(emb, text, noisy, CFG, coords=xy)
    np.testing.assert_array_equal(again["oof"][te], base["oof"][te])
    other = base["folds"][0][1]
    assert not np.allclose(again["oof"][other], base["oof"][other])     # the noisy labels do train other folds


def test_labelled_neighbours_add_what_the_embedding_lacks_and_ridge_stays_the_floor():
    from topt_core.prompt.train import fit_predict

    emb, text, y, xy = smooth_problem()
    out = fit_predict(emb, text, y, CFG, coords=xy)
    lab = out["labelled"]
    assert r2(y[lab], out["oof"][lab]) > r2(y[lab], out["ridge_oof"][lab]) + 0.2
    assert out["chosen"][-1]["neighbours"] > 0.5
    off = fit_predict(emb, text, y, CFG.replace(use_neighbours=False), coords=xy)
    assert r2(y[lab], off["oof"][lab]) < r2(y[lab], out["oof"][lab]) - 0.1
    # without spatial signal the stack does no harm
    emb2, text2, y2, xy2 = smooth_problem(field_weight=0.0, seed=4)
    plain = fit_predict(emb2, text2, y2, CFG, coords=xy2)
    assert r2(y2, plain["oof"]) > r2(y2, plain["ridge_oof"]) - 0.02


def test_unlabelled_regions_lean_on_labelled_neighbours_only():
    from topt_core.prompt.train import fit_predict

    emb, text, y, xy = smooth_problem()
    y = y.copy()
    y[::4] = np.nan
    out = fit_predict(emb, text, y, CFG, coords=xy)
    rows, w = out["evidence"]["rows"], out["evidence"]["weights"]
    assert np.isfinite(y[rows]).all() and rows.shape == (len(y), CFG.neighbours_k)
    assert (rows != np.arange(len(y))[:, None]).all()                      # never a region itself
    assert np.isfinite(out["predictions"]).all() and np.isnan(out["oof"][::4]).all()
    np.testing.assert_allclose(w.sum(1), out["chosen"][-1]["neighbours"], rtol=1e-6)


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_cross_conformal_intervals_cover_at_their_level(level):
    from topt_core.prompt.conformal import coverage, cv_plus
    from topt_core.prompt.train import fit_predict

    emb, text, y, xy = smooth_problem(n=300, noise=1.0, seed=7)
    out = fit_predict(emb, text, y, CFG.replace(level=level), coords=xy)
    lo, hi = cv_plus(y, out["folds"], out["fold_predictions"], level, out["clip"])
    cov, width = coverage(y, lo, hi, np.arange(len(y)))
    assert level - 0.06 <= cov <= level + 0.06 and width > 0
    assert (lo <= out["predictions"] + 1e-9).mean() > 0.95 and (hi >= out["predictions"] - 1e-9).mean() > 0.95


def test_intervals_of_counts_grow_with_the_count_and_stay_non_negative():
    from topt_core.prompt.conformal import cv_plus

    y = np.array([1.0, 2, 3, 50, 60, 70] * 10)
    folds = [(np.setdiff1d(np.arange(60), np.arange(k, 60, 5)), np.arange(k, 60, 5)) for k in range(5)]
    preds = {k: y * 1.1 for k in range(5)}
    lo, hi = cv_plus(y, folds, preds, 0.9, clip=True)
    assert (lo >= 0).all() and (hi - lo)[3] > 2 * (hi - lo)[0]


def test_spatial_blocks_are_contiguous_areas():
    from topt_core.evaluate import make_folds

    xy = np.random.default_rng(1).uniform(0, 1000, (200, 2))
    folds = make_folds(200, "spatial-blocks", 5, seed=0, coords=xy)
    assert len(folds) == 5 and sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(200))
    centres = np.array([xy[te].mean(0) for _, te in folds])
    for k, (_, te) in enumerate(folds):                 # every test region is nearest to its own block's centre
        d = ((xy[te, None, :] - centres[None]) ** 2).sum(-1)
        assert (d.argmin(1) == k).mean() > 0.9


def test_spatial_blocks_inner_splits_are_spatial_too():
    from topt_core.prompt.train import inner_split_positions

    xy = np.random.default_rng(2).uniform(0, 1000, (120, 2))
    tr = np.arange(100)
    splits = inner_split_positions([(0, tr, np.arange(100, 120))],
                                   CFG.replace(protocol="spatial-blocks", inner_splits=4), xy)[0]
    spread = np.mean([xy[tr[iva]].std(0).mean() for _, iva in splits])
    assert spread < 0.7 * xy[tr].std(0).mean()                      # each validation part is a compact area


def test_user_texts_and_poi_names_reach_the_descriptions():
    from tests.core.srel_fixtures import tiny_data
    from topt_core.prompt.describe import describe_regions
    from topt_core.views.poi import names_per_region

    names = names_per_region([0, 0, 0, 1, -1], ["Penn Station", "Penn Station", "MSG", None, "Nowhere"], 3)
    assert names.tolist() == ["Penn Station, MSG", "", ""]
    data = tiny_data(n=6)
    data.texts = {"Neighbourhood": ["Midtown", "", "Chelsea", "SoHo", "Tribeca", "Harlem"],
                  "POIs": names.tolist() + ["", "", ""]}
    data.validate()
    text = describe_regions(data)
    assert "Neighbourhood: Midtown. POIs: Penn Station, MSG." in text[0] and "Neighbourhood: Chelsea." in text[2]
    assert "Neighbourhood" not in text[1]
    assert data.subset([2]).texts["Neighbourhood"].tolist() == ["Chelsea"]


def test_texts_travel_with_the_model_folder(tmp_path):
    from tests.core.srel_fixtures import FAST, tiny_data
    from topt_core.checkpoint import load_region_data
    from topt_core.srel import save_model, train_srel

    data = tiny_data(n=12)
    data.texts = {"Name": [f"n{i}" for i in range(12)]}
    save_model(train_srel(data, FAST.replace(epochs=1)), tmp_path / "m", data=data)
    assert load_region_data(tmp_path / "m").texts["Name"][3] == "n3"
