"""Prompt4RE (stage 2): descriptions, templates, the inductive head and the nested cross-validation."""
import numpy as np
import pytest
import scipy.sparse as sp

from topt_core.config import PromptConfig
from topt_core.data import RegionData
from topt_core.errors import ToptCancelled, ToptConfigError, ToptDataError
from tests.tiny_encoder import source as tiny_source

POI_NAMES = ["school", "bar", "shop", "park", "clinic"]
LU_NAMES = ["residential", "commercial", "industrial"]


def synthetic_data(n=40, seed=0, with_mobility=True, with_poi=True):
    rng = np.random.default_rng(seed)
    xy = np.stack(np.meshgrid(np.arange(8), np.arange(n // 8 + 1)), -1).reshape(-1, 2)[:n] * 500.0 + 580000
    poi = rng.poisson(rng.uniform(0.5, 20, size=(n, 5))).astype(float)
    lu = rng.poisson(3, size=(n, 3)).astype(float) + 1
    od = sp.random(n, n, density=0.3, random_state=seed, data_rvs=lambda k: rng.integers(1, 200, k)).tocsr()
    edges = np.array([[i, i + 1] for i in range(n - 1)]).T
    return RegionData(region_ids=np.arange(n).astype(str), centroids=xy, areas=rng.uniform(1e5, 1e6, n),
                      crs="EPSG:32618", poi_counts=poi if with_poi else None, poi_categories=POI_NAMES,
                      landuse=lu, landuse_classes=LU_NAMES, mobility=od if with_mobility else None,
                      adjacency=edges).validate()


def synthetic_problem(n=40, F=3, Dt=8, seed=0):
    """Embeddings, per-region text vectors and a target that depends on both (so the head has text to use)."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 12))
    text = rng.normal(size=(n, F, Dt))
    text[:, 0, :] = rng.normal(size=Dt)                       # the task-template facet: the same for every region
    y = 50 + 10 * emb[:, 0] + 20 * text[:, 1, 0] + rng.normal(0, 1, n)
    return emb, text, y


# the head route alone (the other routes and the log scale off): its own mechanics are tested here
FAST = PromptConfig(protocol="hafusion-ny", use_head="on", use_embedding=False, use_views=False, use_text=False,
                    use_neighbours=False, target_transform="none", folds=4, epochs=60, eval_every=5, patience=30, inner_splits=3, text_rank=8, head_dim=8,
                    lr=3e-3, device="cpu", seed=7)


# ---------------------------------------------------------------- descriptions and templates
def test_descriptions_use_category_names_counts_and_shares():
    from topt_core.prompt import describe_regions
    from topt_core.prompt.describe import describe_facets

    data = synthetic_data()
    texts = describe_regions(data)
    assert len(texts) == data.n
    i = 3
    poi = data.poi_counts[i]
    top = int(np.argmax(poi))
    share = 100 * poi[top] / poi.sum()
    assert f"{int(poi[top])} {POI_NAMES[top]} ({share:.0f}%)" in texts[i] or f"({share:.1f}%)" in texts[i]
    assert f"{int(poi.sum())} in total" in texts[i]
    assert "Land use:" in texts[i] and any(c in texts[i] for c in LU_NAMES)
    out_trips = int(np.asarray(data.mobility.sum(1)).ravel()[i])
    assert f"{out_trips} trips out" in texts[i] and f"of {data.n})" in texts[i]
    assert "km2" in texts[i] and "neighbouring region" in texts[i] and "centroid" in texts[i]
    facets = describe_facets(data)
    assert set(facets) == {"poi", "landuse", "mobility", "place"}


def test_descriptions_without_poi_or_mobility():
    from topt_core.prompt import describe_regions
    from topt_core.prompt.describe import describe_facets

    data = synthetic_data(with_mobility=False, with_poi=False)
    texts = describe_regions(data)
    assert all("POI" not in t and "Mobility" not in t and "Land use" in t for t in texts)
    assert set(describe_facets(data)) == {"landuse", "place"}


@pytest.mark.parametrize("task,words", [("crime", "crimes"), ("checkin", "check-ins"), ("service", "311"),
                                        ("generic", "median rent")])
def test_every_task_template(task, words):
    from topt_core.prompt import TASKS, build_prompts
    from topt_core.prompt.templates import build_prompt_facets

    assert set(TASKS) == {"crime", "checkin", "service", "generic"}
    data = synthetic_data()
    prompts = build_prompts(data, task, "median rent", task_description="Rents in USD per month.")
    assert len(prompts) == data.n and all(words in p for p in prompts)
    assert "Included POIs" in prompts[0]
    if task == "generic":
        assert "Rents in USD per month." in prompts[0]
    names, texts = build_prompt_facets(data, task, "median rent")
    assert names == ["task", "full", "poi", "landuse", "mobility", "place"]
    assert all(len(t) == len(names) for t in texts) and texts[0][0] == texts[1][0]
    bare = build_prompts(data, task, "median rent", use_task_template=False)
    assert all(words not in p for p in bare) and bare[0].startswith("Included POIs")


def test_unknown_task_is_refused():
    from topt_core.prompt import build_prompts

    with pytest.raises(ToptConfigError, match="expected one of"):
        build_prompts(synthetic_data(), "population-density", "x")


# ---------------------------------------------------------------- head and nested CV
def test_epoch_zero_is_exactly_the_ridge_baseline():
    from topt_core.prompt.train import fit_predict

    emb, text, y = synthetic_problem()
    out = fit_predict(emb, text, y, FAST.replace(epochs=0))
    assert all(c["epochs"] == 0 for c in out["chosen"])
    np.testing.assert_allclose(out["oof"], out["ridge_oof"], rtol=1e-4, atol=1e-3)


def test_head_learns_from_text_and_beats_ridge():
    from topt_core.evaluate import regression_metrics
    from topt_core.prompt.train import fit_predict

    emb, text, y = synthetic_problem(n=80)
    out = fit_predict(emb, text, y, FAST.replace(epochs=200, patience=60))
    prompt = regression_metrics(y, out["oof"])
    ridge = regression_metrics(y, out["ridge_oof"])
    assert any(c["epochs"] > 0 for c in out["chosen"])
    assert prompt["mae"] < ridge["mae"]


def test_inductive_other_test_regions_do_not_change_a_prediction():
    from topt_core.prompt.train import fit_predict

    emb, text, y = synthetic_problem()
    base = fit_predict(emb, text, y, FAST)
    k = next(k for k, c in enumerate(base["chosen"]) if c["fold"] >= 0 and c["epochs"] > 0)
    te = base["folds"][k][1]
    i, j = int(te[0]), int(te[1])
    text2, y2 = text.copy(), y.copy()
    text2[j] += np.random.default_rng(1).normal(0, 5, size=text2[j].shape)   # another test region's vectors
    y2[j] = y2[j] * 3 + 100                                                  # ... and its label
    other = fit_predict(emb, text2, y2, FAST)
    assert other["oof"][i] == base["oof"][i]
    # non-vacuous: the region's OWN vectors do move its prediction
    text3 = text.copy()
    text3[i, 1:] += np.random.default_rng(2).normal(0, 5, size=text3[i, 1:].shape)
    own = fit_predict(emb, text3, y, FAST)
    assert own["oof"][i] != base["oof"][i]


def test_selection_never_sees_the_outer_test_fold():
    from topt_core.prompt.train import fit_predict

    emb, text, y = synthetic_problem()
    record = []
    base = fit_predict(emb, text, y, FAST, record=record)
    folds = base["folds"]
    sel = [r for r in record if r["phase"] == "select"]
    assert {r["group"] for r in sel} == set(range(len(folds))) | {-1}
    for r in sel:
        if r["group"] < 0:
            continue
        test = set(folds[r["group"]][1].tolist())
        assert not test & set(r["rows"].tolist())
        assert not test & (set(r["train"].tolist()) | set(r["val"].tolist()))
        assert len(r["val"]) > 0 and not set(r["val"].tolist()) & set(r["train"].tolist())
    for r in record:
        if r["phase"] == "refit" and r["group"] >= 0:
            assert not set(folds[r["group"]][1].tolist()) & set(r["train"].tolist())
    # behavioural: scrambling fold k's test labels changes nothing chosen or predicted for fold k
    k = 1
    te = folds[k][1]
    y2 = y.copy()
    y2[te] = y2[te][::-1] * 5 - 7
    other = fit_predict(emb, text, y2, FAST)
    assert other["chosen"][k] == base["chosen"][k]
    np.testing.assert_array_equal(other["oof"][te], base["oof"][te])


def test_deterministic_and_seed_sensitive():
    from topt_core.prompt.train import fit_predict

    emb, text, y = synthetic_problem()
    a = fit_predict(emb, text, y, FAST)
    b = fit_predict(emb, text, y, FAST)
    np.testing.assert_array_equal(a["oof"], b["oof"])
    np.testing.assert_array_equal(a["predictions"], b["predictions"])
    assert a["chosen"] == b["chosen"]
    c = fit_predict(emb, text, y, FAST.replace(seed=8))
    assert not np.array_equal(c["predictions"], a["predictions"])


def test_unlabelled_regions_get_predictions_and_no_oof():
    from topt_core.prompt.train import fit_predict

    emb, text, y = synthetic_problem(n=48)
    y[[3, 10, 30, 47]] = np.nan
    out = fit_predict(emb, text, y, FAST)
    assert np.isfinite(out["predictions"]).all() and out["predictions"].shape == (48,)
    assert np.isnan(out["oof"][[3, 10, 30, 47]]).all()
    assert np.isfinite(out["oof"][out["labelled"]]).all() and out["labelled"].sum() == 44


# ---------------------------------------------------------------- run_prompt4re end to end (tiny random LM)
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("topt-cache")


def test_run_prompt4re_end_to_end_with_a_tiny_encoder(cache):
    from topt_core.prompt import PromptResult, run_prompt4re

    data = synthetic_data()
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(data.n, 10))
    y = data.poi_counts[:, 1] * 3 + rng.normal(0, 1, data.n)
    y[[0, 5]] = np.nan
    msgs = []

    class Rep:
        def set_progress(self, p): pass
        def set_text(self, t): msgs.append(t)
        def info(self, t): msgs.append(t)
        def warning(self, t): msgs.append("W:" + t)
        def is_canceled(self): return False

    cfg = FAST.replace(text_encoder=tiny_source("bert"), task="crime")
    res = run_prompt4re(emb, data, y, "crimes", cfg, reporter=Rep(), cache_dir=cache)
    assert isinstance(res, PromptResult)
    assert res.predictions.shape == (data.n,) and np.isfinite(res.predictions).all()
    assert np.isnan(res.oof[[0, 5]]).all() and res.labelled.sum() == data.n - 2
    assert set(res.metrics) == {"mae", "rmse", "r2"} and set(res.ridge_metrics) == {"mae", "rmse", "r2"}
    assert len(res.prompts) == data.n and "crimes" in res.prompts[0] and "Included POIs" in res.prompts[0]
    assert res.facet_names[0] == "task" and len(res.facet_prompts[0]) == len(res.facet_names)
    assert res.encoder_info["source"] == tiny_source("bert") and res.encoder_info["pooling"] == "mean"
    assert len(res.encoder_info["revision"]) == 64 and res.encoder_info["transformers"]
    assert all("W:" + w in msgs for w in res.warnings)          # every warning of the result reached the log
    assert any("device" in m.lower() and "cpu" in m for m in msgs)
    assert any("fold 1/4" in m for m in msgs)
    assert set(res.timings) == {"encode_s", "train_s"} and res.device.device == "cpu"
    assert len(res.chosen) == cfg.folds + 1


def test_cancel_raises(cache):
    from topt_core.prompt import run_prompt4re

    data = synthetic_data()
    emb = np.random.default_rng(0).normal(size=(data.n, 6))
    calls = []

    class Cancel:
        def set_progress(self, p): pass
        def set_text(self, t): pass
        def info(self, t): pass
        def warning(self, t): pass
        def is_canceled(self):
            calls.append(1)
            return len(calls) > 3                       # cancel once training is under way

    with pytest.raises(ToptCancelled):
        run_prompt4re(emb, data, data.poi_counts[:, 0] + 1.0, "y",
                      FAST.replace(text_encoder=tiny_source("bert"), epochs=200, patience=200),
                      reporter=Cancel(), cache_dir=cache)
    assert len(calls) > 3


@pytest.mark.parametrize("case,match", [
    ("few", "needs at least 5"), ("constant", "same value"), ("allnan", "no known values"),
    ("nanemb", "NaN or infinite"), ("rows", "embedding rows"), ("targetlen", "one value per region")])
def test_input_errors(case, match, cache):
    from topt_core.prompt import run_prompt4re

    data = synthetic_data()
    emb = np.random.default_rng(0).normal(size=(data.n, 6))
    y = np.arange(data.n, dtype=float)
    if case == "few":
        y[4:] = np.nan
    elif case == "constant":
        y[:] = 3.0
        y[:5] = np.nan
    elif case == "allnan":
        y[:] = np.nan
    elif case == "nanemb":
        emb[2, 1] = np.nan
    elif case == "rows":
        emb = emb[:-1]
    elif case == "targetlen":
        y = y[:-2]
    with pytest.raises(ToptDataError, match=match):
        run_prompt4re(emb, data, y, "y", FAST.replace(text_encoder=tiny_source("bert")), cache_dir=cache)


def test_without_the_head_only_the_full_prompt_is_encoded(tmp_path):
    """The facets feed only the cross-attention head: with it off, one text per region is encoded
    (a quarter of the work at city scale), and the prompts are the same full prompts
    (text_input="description"; the default "auto" encodes less, tests/core/test_city_speed.py)."""
    from topt_core.prompt import run_prompt4re

    data = synthetic_data()
    rng = np.random.default_rng(3)
    emb, y = rng.normal(size=(data.n, 10)), data.poi_counts[:, 1] * 3 + rng.normal(0, 1, data.n)
    on = run_prompt4re(emb, data, y, "crimes", FAST.replace(text_encoder=tiny_source("bert")), cache_dir=tmp_path / "a")
    msgs = []

    class Rep:
        def set_progress(self, p): pass
        def set_text(self, t): msgs.append(t)
        def info(self, t): msgs.append(t)
        def warning(self, t): msgs.append(t)
        def is_canceled(self): return False

    off = run_prompt4re(emb, data, y, "crimes", PromptConfig(text_encoder=tiny_source("bert"), folds=4, device="cpu",
                                                             text_input="description"),
                        reporter=Rep(), cache_dir=tmp_path / "b")
    assert len(on.facet_names) > 1 and off.facet_names == ["full"]
    assert off.prompts == on.prompts
    assert any(f"encoding {len(set(off.prompts))} distinct prompts" in m for m in msgs)
