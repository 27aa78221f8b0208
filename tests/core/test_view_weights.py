"""Per-view loss weights (``SrelConfig.view_weights``): any registered view, a user's added one included, gets a
weight without a config field of its own, through both front doors' ``name=weight`` syntax."""
import json

import numpy as np
import pytest
import torch

from srel_fixtures import FAST, tiny_data
from tests.toy_view import add_to_registry
from topt_core import views
from topt_core.config import SrelConfig, parse_view_weights
from topt_core.errors import ToptConfigError
from topt_core.views import Table


def test_the_front_door_syntax_parses_to_sorted_pairs():
    assert parse_view_weights("poi=1; geometry=0.5") == (("geometry", 0.5), ("poi", 1.0))
    assert parse_view_weights(" context = 0 , poi=2 ") == (("context", 0.0), ("poi", 2.0))
    assert parse_view_weights("") == () and parse_view_weights(None) == ()


@pytest.mark.parametrize("text, match", [
    ("poi", r"'poi' is not of the form name=number.*poi=1; geometry=0.5"),
    ("poi=heavy", r"'poi=heavy' is not of the form name=number"),
    ("=1", r"'=1' is not of the form name=number"),
    ("poi=-1", r"weight of 'poi' must be a finite number >= 0, got -1.0"),
    ("poi=nan", r"weight of 'poi' must be a finite number >= 0"),
    ("poi=1; poi=2", r"names a view twice"),
])
def test_bad_weights_are_refused_with_the_expected_form(text, match):
    with pytest.raises(ToptConfigError, match=match):
        parse_view_weights(text)


def test_weights_survive_the_config_json_round_trip():
    cfg = SrelConfig(view_weights={"poi": 0.5, "roads": 2})
    assert cfg.view_weights == (("poi", 0.5), ("roads", 2.0))
    back = SrelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))     # as a model folder stores it
    assert back == cfg and hash(back) == hash(cfg)


def test_a_named_weight_wins_over_the_field_and_the_default():
    poi, ctx = views.get("poi"), views.get("context")
    assert poi.loss_weight(SrelConfig(poi_weight=3.0)) == 3.0                  # the built-in field
    assert poi.loss_weight(SrelConfig(poi_weight=3.0, view_weights={"poi": 0.25})) == 0.25
    assert ctx.loss_weight(SrelConfig(view_weights={"poi": 0.25})) == 1.0      # not named: its own field


def _loss(data, cfg):
    from topt_core.srel.inputs import build_inputs, fit_preprocessing, input_schema
    from topt_core.srel.losses import build_targets, srel_loss
    from topt_core.srel.model import SrelModel

    torch.manual_seed(0)
    model = SrelModel(cfg, input_schema(data, cfg), fit_preprocessing(data, cfg))
    inputs = build_inputs(model, data, "cpu")
    with torch.no_grad():
        return srel_loss(model, model(inputs), build_targets(data, model, "cpu", inputs))


def test_an_added_view_is_weighted_in_the_loss_by_its_name(monkeypatch):
    add_to_registry(monkeypatch)                      # the toy view: it has no roads_weight field
    data = tiny_data(n=24, views=("poi",))
    data.tables["roads"] = Table(np.random.default_rng(1).gamma(2.0, 300.0, (24, 2)), ["primary", "residential"])
    data.validate()
    cfg = FAST.replace(geometry_view="off", context_view="off")
    total, parts = _loss(data, cfg)
    assert set(parts) == {"poi", "roads"}
    for w in (0.0, 3.0):
        weighted, same = _loss(data, cfg.replace(view_weights={"roads": w}))
        assert same == pytest.approx(parts)
        assert float(weighted) == pytest.approx(parts["poi"] + w * parts["roads"], rel=1e-5)
    assert float(total) == pytest.approx(parts["poi"] + parts["roads"], rel=1e-5)


def test_a_weight_for_no_view_is_refused_before_training():
    from topt_core.srel import train_srel

    with pytest.raises(ToptConfigError, match=r"'pois', which is not a view; expected names from \['poi'"):
        train_srel(tiny_data(n=20), FAST.replace(view_weights={"pois": 0.5}))


def test_the_command_line_passes_the_weights_and_refuses_bad_ones(tmp_path, capsys, monkeypatch):
    from topt_core.__main__ import main
    import topt_core.srel as S

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    seen = {}
    real = S.train_srel

    def spy(data, config, reporter=None):
        seen["weights"] = config.view_weights
        return real(data, config.replace(epochs=2), reporter)

    monkeypatch.setattr(S, "train_srel", spy)
    sample = "resources/sample/manhattan.gpkg"
    base = ["train", "--regions", f"{sample}:regions", "--region-id", "region_id", "--pois", f"{sample}:pois",
            "--poi-category", "category", "--epochs", "2", "--restarts", "1"]
    assert main(base + ["--view-weights", "poi=0.5; geometry=2", "--output", str(tmp_path / "e.gpkg"),
                        "--model-dir", str(tmp_path / "m")]) == 0
    assert seen["weights"] == (("geometry", 2.0), ("poi", 0.5))
    stored = json.loads((tmp_path / "m" / "config.json").read_text())["config"]["view_weights"]
    assert [tuple(p) for p in stored] == [("geometry", 2.0), ("poi", 0.5)]
    capsys.readouterr()
    assert main(base + ["--view-weights", "poi:0.5", "--output", str(tmp_path / "f.gpkg"),
                        "--model-dir", str(tmp_path / "n")]) == 2
    assert "'poi:0.5' is not of the form name=number" in capsys.readouterr().err
    assert not (tmp_path / "f.gpkg").exists() and not (tmp_path / "n").exists()
