"""Stage 2 never loses to the simple baselines (issue 19): a heavy-tailed target with few labels, and a
target that is mostly a smooth spatial field the embedding cannot see (where label interpolation wins)."""
import numpy as np

from topt_core.config import PromptConfig


def r2(y, p):
    return 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)


def heavy_tailed_city(seed=0, n=77):
    """77 regions in a 9 km square, one central region with ~20 % of the total and three with ~45 %
    together (a check-in count as in the held-out city of issue 19); the embedding explains the rest."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 9_000, (n, 2))
    emb = rng.normal(size=(n, 12))
    y = np.exp(1.0 + 0.6 * emb[:, 0] + 0.3 * emb[:, 1] + 0.2 * rng.normal(size=n)) * 40
    centre = int(np.argmin(((xy - 4_500) ** 2).sum(1)))
    near = [int(i) for i in np.argsort(((xy - xy[centre]) ** 2).sum(1))[1:3]]
    rest = y.sum()
    y[centre] = 0.2 / 0.8 * rest * 1.0                  # ~20 % of the new total
    for i in near:
        y[i] = 0.125 / 0.8 * rest                       # the three together ~45 %
    emb[[centre] + near, 0] += 2.0                      # the embedding sees that they are big, not how big
    return emb, np.zeros((n, 0, 0)), y, xy


def test_heavy_tailed_target_with_few_labels_does_not_fall_below_ridge():
    """The case that lost 0.13 R² to Ridge: extreme regions whose residuals the neighbour term carried
    to their neighbours. On 4 seeds of the fixture (25 folds), stage 2 stays within 0.01 of Ridge and its
    90 % intervals hold 85-95 % of the labelled regions."""
    from topt_core.prompt.conformal import coverage, cv_plus
    from topt_core.prompt.train import fit_predict

    for seed in range(4):
        emb, text, y, xy = heavy_tailed_city(seed)
        top = np.sort(y)[::-1]
        assert 0.15 < top[0] / y.sum() < 0.3 and 0.35 < top[:3].sum() / y.sum() < 0.55
        y = y.copy()
        y[[5, 40, 60]] = np.nan                          # 74 labelled, as in the issue
        cfg = PromptConfig(protocol="random", folds=25, device="cpu", seed=10 + seed, use_text=False)
        out = fit_predict(emb, text, y, cfg, coords=xy)
        lab = out["labelled"]
        stage2, ridge = r2(y[lab], out["oof"][lab]), r2(y[lab], out["ridge_oof"][lab])
        assert stage2 >= ridge - 0.01, (seed, stage2, ridge)
        lo, hi = cv_plus(np.where(lab, y, np.nan), out["folds"], out["fold_predictions"], 0.9, out["clip"])
        cov, _ = coverage(y, lo, hi, np.concatenate([te for _, te in out["folds"]]))
        assert 0.85 <= cov <= 0.95, (seed, cov)             # the 90 % intervals hold on the heavy tail too


def test_smooth_field_with_weak_features_reaches_label_interpolation():
    """When the labels' spatial field is the signal and the embedding is weak, stage 2 must reach what
    inverse-distance interpolation of the labels gives on the same folds (minus 0.005)."""
    from topt_core.prompt.train import fit_predict

    rng = np.random.default_rng(7)
    n = 400
    xy = rng.uniform(0, 12_000, (n, 2))
    field = np.sin(xy[:, 0] / 1800) * np.cos(xy[:, 1] / 2100)
    emb = rng.normal(size=(n, 16))
    y = 10 + 3 * field + 0.3 * emb[:, 0] + 0.4 * rng.normal(size=n)
    cfg = PromptConfig(protocol="random", folds=10, device="cpu", seed=5, use_text=False)
    out = fit_predict(emb, np.zeros((n, 0, 0)), y, cfg, coords=xy)
    stage2, knn, ridge = r2(y, out["oof"]), r2(y, out["knn_oof"]), r2(y, out["ridge_oof"])
    assert knn > ridge + 0.3                             # the fixture is what it says: interpolation wins
    assert stage2 >= knn - 0.005, (stage2, knn)


def test_interpolation_is_a_route_and_the_guard_falls_back_to_it():
    """With an embedding of pure noise the inner splits favour the interpolation: the final model leans
    on that route (its own weight or the guard's share), and switching the route off costs accuracy."""
    from topt_core.prompt.train import fit_predict

    rng = np.random.default_rng(3)
    n = 300
    xy = rng.uniform(0, 10_000, (n, 2))
    y = 5 + 2 * np.sin(xy[:, 0] / 1500) + np.cos(xy[:, 1] / 1300) + 0.2 * rng.normal(size=n)
    emb = rng.normal(size=(n, 8))
    cfg = PromptConfig(protocol="random", folds=5, device="cpu", seed=2, use_text=False, use_views=False,
                       use_neighbours=False)
    out = fit_predict(emb, np.zeros((n, 0, 0)), y, cfg, coords=xy)
    final = out["chosen"][-1]
    assert final["interpolation"] > 0.8
    off = fit_predict(emb, np.zeros((n, 0, 0)), y, cfg.replace(use_interpolation=False, guard=False), coords=xy)
    assert r2(y, out["oof"]) > r2(y, off["oof"]) + 0.3


def test_far_labels_do_not_speak_for_a_region_inside_an_unlabelled_area():
    """The labelled-neighbour term and the interpolation shrink with the distance of the labelled
    neighbourhood: for a region 15 spacings away from every label the term is under a quarter of it,
    next to the labels it is (nearly) whole."""
    from topt_core.prompt.stack import reach_shrink

    g = np.stack(np.meshgrid(np.arange(20.0), np.arange(20.0)), -1).reshape(-1, 2) * 100.0
    labelled = np.flatnonzero(g[:, 0] < 500)                  # the western quarter is labelled
    query = np.array([int(np.argmin(((g - [600, 1000]) ** 2).sum(1))),   # next to the labels
                      int(np.argmin(((g - [1900, 1000]) ** 2).sum(1)))])  # 15 spacings east of them
    _, _, s = reach_shrink(g, labelled, query, 8)
    assert s[0] > 0.85 and s[1] < 0.25


def test_spatial_blocks_stage2_stays_with_ridge_where_the_labels_are_far():
    """Under spatial-blocks folds the interpolation of far labels is poor; the stack must not lean on it
    more than the inner (spatial) splits justify: stage 2 within 0.01 of Ridge, when the embedding is good."""
    from topt_core.prompt.train import fit_predict

    rng = np.random.default_rng(11)
    n = 400
    xy = rng.uniform(0, 12_000, (n, 2))
    emb = rng.normal(size=(n, 10))
    y = 20 + 3 * emb[:, 0] + 2 * emb[:, 1] + np.sin(xy[:, 0] / 2500) + 0.5 * rng.normal(size=n)
    cfg = PromptConfig(protocol="spatial-blocks", folds=10, device="cpu", seed=4, use_text=False)
    out = fit_predict(emb, np.zeros((n, 0, 0)), y, cfg, coords=xy)
    assert r2(y, out["oof"]) >= r2(y, out["ridge_oof"]) - 0.01
