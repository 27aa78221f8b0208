"""Attention modes as siblings (issue 20): the engine hands a mode object on and never branches on its name."""
import numpy as np
import pytest
import torch

from srel_fixtures import FAST, tiny_data
from topt_core.srel import modes
from topt_core.srel.inputs import build_inputs, fit_preprocessing, input_schema
from topt_core.srel.losses import build_targets, srel_loss
from topt_core.srel.model import SrelModel
from topt_core.targets import FlowTarget, SimilarityTarget


def _model(data, cfg=FAST):
    return SrelModel(cfg, input_schema(data, cfg), fit_preprocessing(data, cfg)).eval()


def test_a_new_mode_is_one_class_the_engine_does_not_need_to_know():
    """A mode under another name (here the dense mode's behaviour as "toy") runs through the inputs, the
    forward pass and the losses exactly like the mode it copies: nothing looks at the name."""
    class Toy(modes.dense.DenseMode):
        name = "toy"

    data = tiny_data(n=20).validate()
    model = _model(data)
    torch.manual_seed(0)
    with torch.no_grad():
        ref_inp, toy_inp = build_inputs(model, data, mode="dense"), build_inputs(model, data, mode=Toy())
        assert toy_inp.mode.name == "toy"
        emb = model(ref_inp)
        torch.testing.assert_close(model(toy_inp), emb, rtol=0, atol=0)
        ref, _ = srel_loss(model, emb, build_targets(data, model, "cpu", ref_inp))
        toy, _ = srel_loss(model, emb, build_targets(data, model, "cpu", toy_inp))
    assert float(toy) == float(ref)


def test_views_emit_mode_neutral_targets():
    from topt_core import views

    data = tiny_data(n=20).validate()
    model = _model(data)
    stats = model.stats()
    targets = {v.name: v.ssl_target(data, stats, config=FAST) for v in model.view_units}
    assert isinstance(targets["mobility"], FlowTarget)
    assert all(isinstance(targets[v], SimilarityTarget) for v in ("poi", "landuse", "extra"))
    assert not any(isinstance(t, torch.Tensor) or isinstance(t, dict) for t in targets.values())
    assert views.get("poi").ssl_target(data, stats).mask is None          # every region has POIs: no mask


@pytest.mark.parametrize("name", sorted(modes.REGISTRY))
def test_each_mode_describes_itself_and_estimates_its_memory(name):
    mode = modes.get(name)
    assert mode is modes.REGISTRY[name] and modes.get(mode) is mode
    forced = FAST.replace(attention=name)
    assert modes.resolve(forced, 50) is mode
    assert mode.describe(50, forced).startswith(f"{name} attention") and "(as set)" in mode.describe(50, forced)
    auto = FAST.replace(attention="auto", auto_sparse_above=60)
    n = next(k for k in (50, 70) if modes.resolve(auto, k) is mode)       # dense up to 60 regions, sparse above
    assert f"(auto: {n} regions {'<=' if n < 60 else '>'} 60)" in mode.describe(n, auto)
    small, big = mode.estimate_memory(1000, FAST), mode.estimate_memory(4000, FAST)
    assert 0 < small < big and mode.check_memory(100, FAST) == mode.estimate_memory(100, FAST)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        modes.get("blocky")


def test_masked_similarity_goes_through_both_modes_alike_on_small_layers():
    """A view that some regions lack (no POI) gives a masked target; below the sample sizes the sparse
    mode's sampled loss equals the dense mode's exact one."""
    data = tiny_data(n=30).validate()
    data.poi_counts[:8] = 0.0
    model = _model(data)
    t = model.view_units[0].ssl_target(data, model.stats(), config=FAST)
    assert t.mask is not None and t.mask.sum() == 22
    z = torch.randn(30, FAST.embed_dim)
    dense = modes.get("dense").objective(t, FAST, "cpu")(z)
    sparse = modes.get("sparse").objective(t, FAST, "cpu")(z)
    assert float(sparse) == pytest.approx(float(dense), rel=1e-5)
