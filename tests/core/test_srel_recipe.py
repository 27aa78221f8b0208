"""srel/recipe.py: sparse POIs get the locality objectives under ``sparse_recipe="auto"``, dense ones do not."""
import numpy as np
import pytest

from srel_fixtures import FAST, CountingReporter, tiny_data
from topt_core.errors import ToptConfigError
from topt_core.srel import embed, load_model, recipe, save_model, train_srel


def _sparse(n=40):
    data = tiny_data(n=n)
    data.poi_counts = np.floor(data.poi_counts / 4)            # a median of ~4 POIs per region, as OSM tracts
    assert np.median(data.poi_counts.sum(1)) < 10
    return data


def _dense(n=40):
    data = tiny_data(n=n)
    assert np.median(data.poi_counts.sum(1)) >= 10
    return data


def test_auto_applies_the_recipe_to_sparse_pois_only():
    on, note = recipe.resolve(FAST, _sparse())
    assert on.sparse_recipe == "on" and "sparse POIs (auto: median" in note
    assert {k: getattr(on, k) for k in recipe.RECIPE} == recipe.RECIPE
    off, note = recipe.resolve(FAST, _dense())
    assert off == FAST.replace(sparse_recipe="off") and note.startswith("Training recipe: plain (auto: median")
    no_poi, _ = recipe.resolve(FAST, tiny_data(n=40, views=("landuse", "mobility")))
    assert no_poi.sparse_recipe == "off" and no_poi.mask_weight == 0


def test_on_and_off_win_over_the_layer():
    assert recipe.resolve(FAST.replace(sparse_recipe="off"), _sparse()) == (FAST.replace(sparse_recipe="off"), "")
    forced, note = recipe.resolve(FAST.replace(sparse_recipe="on"), _dense())
    assert forced.view_fusion == "concat" and forced.contrast_weight == 1.0 and "(auto" not in note


def test_a_field_the_user_set_wins_over_the_recipe():
    cfg, note = recipe.resolve(FAST.replace(mask_weight=2.0), _sparse())
    assert cfg.mask_weight == 2.0 and cfg.mask_rate == 0.5 and cfg.contrast_weight == 1.0
    assert "kept as set: mask_weight" in note and "weight 2)" in note
    with pytest.raises(ToptConfigError, match="sparse_recipe"):
        FAST.replace(sparse_recipe="sometimes")


def test_a_sparse_layer_trains_with_the_recipe_and_its_model_folder_reloads(tmp_path):
    data, rep = _sparse(), CountingReporter()
    res = train_srel(data, FAST, reporter=rep)
    cfg = res.model.config
    assert cfg.sparse_recipe == "on" and cfg.view_fusion == "concat" and cfg.mask_weight == 5.0
    assert hasattr(res.model, "view_mix") and hasattr(res.model, "contrast_head")
    assert any(t.startswith("Training recipe for sparse POIs") for t in rep.infos)
    save_model(res, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.config.sparse_recipe == "on" and back.config.view_fusion == "concat"
    np.testing.assert_allclose(embed(back, data), res.embeddings, rtol=1e-5, atol=1e-6)


def test_auto_trains_a_dense_layer_exactly_as_the_plain_recipe():
    data = _dense()
    auto = train_srel(data, FAST)
    plain = train_srel(data, FAST.replace(sparse_recipe="off"))
    assert auto.model.config.sparse_recipe == "off"
    assert np.array_equal(auto.embeddings, plain.embeddings)


def test_the_command_line_passes_the_recipe_to_the_model(tmp_path, monkeypatch):
    import json

    from topt_core.__main__ import main

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    sample = "resources/sample/manhattan.gpkg"
    assert main(["train", "--regions", f"{sample}:regions", "--region-id", "region_id", "--pois", f"{sample}:pois",
                 "--poi-category", "category", "--epochs", "2", "--restarts", "1", "--sparse-recipe", "on",
                 "--output", str(tmp_path / "e.gpkg"), "--model-dir", str(tmp_path / "m")]) == 0
    stored = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert stored["sparse_recipe"] == "on" and stored["view_fusion"] == "concat" and stored["mask_weight"] == 5.0


def test_the_memory_estimates_count_the_recipes_extra_passes_and_the_refusal_names_the_way_out(monkeypatch):
    from topt_core.errors import ToptResourceError
    from topt_core.srel import memory
    from topt_core.srel.modes import get

    on = FAST.replace(**recipe.RECIPE)
    for mode, n in (("dense", 400), ("sparse", 5000)):
        plain, more = get(mode).estimate_memory(n, FAST), get(mode).estimate_memory(n, on)
        assert plain < more < 3 * plain
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": get("sparse").estimate_memory(5000, FAST))
    assert get("sparse").check_memory(5000, FAST) > 0
    with pytest.raises(ToptResourceError, match="SPARSE_RECIPE=off"):
        get("sparse").check_memory(5000, on)


def test_a_model_folder_from_before_the_recipe_reads_as_trained_without_it():
    from topt_core.config import SrelConfig, upgrade_srel_settings

    old = {k: v for k, v in SrelConfig().to_dict().items() if k != "sparse_recipe"}
    assert SrelConfig.from_dict(upgrade_srel_settings(old)).sparse_recipe == "off"
