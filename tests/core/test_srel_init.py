"""Stage-1 initial weights (issue 20): every module re-initialises itself with ``reset_parameters()``, and
construction draws exactly what it always drew (so a seed gives the same model and embeddings as before)."""
import pytest
import torch
from torch import nn

from srel_fixtures import FAST, tiny_data
from topt_core.srel.attention import RegionAttention
from topt_core.srel.encodings import BucketSpatialBias, CentralityEncoding, GaussianSpatialBias, MobilityBias
from topt_core.srel.inputs import fit_preprocessing, input_schema
from topt_core.srel.model import GraphormerLayer, SrelEnsemble, SrelModel

MODULES = {
    "attention": lambda: RegionAttention(8, 2, 0.1),
    "gaussian": lambda: GaussianSpatialBias(2, 5, 3.5),
    "bucket": lambda: BucketSpatialBias(2, 6, 4, 3.5),
    "mobility": lambda: MobilityBias(3),
    "centrality": lambda: CentralityEncoding(8, 5, 4, True),
    "centrality_no_mobility": lambda: CentralityEncoding(8, 5, 4, False),
    "layer": lambda: GraphormerLayer(8, 2, 0.1),
}


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def _scramble(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_reset_after_the_same_seed_gives_back_the_built_weights(name):
    torch.manual_seed(5)
    module = MODULES[name]()
    built = _state(module)
    after_build = torch.rand(4)                       # the RNG stream right after the build
    _scramble(module)
    torch.manual_seed(5)
    module.reset_parameters()
    assert _same(_state(module), built)
    assert torch.equal(torch.rand(4), after_build)    # a reset draws exactly what the build drew


RANDOM = {   # the parameters with a random initial value; every other one has a fixed value
    "attention": ("qkv.", "proj."), "gaussian": ("mlp.",), "bucket": (), "mobility": (),
    "centrality": ("degree.", "out_strength.", "in_strength."), "centrality_no_mobility": ("degree.",),
    "layer": ("attn.", "ffn."),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_reset_redraws_the_random_weights_and_restores_the_fixed_ones(name):
    torch.manual_seed(5)
    module = MODULES[name]()
    built = {k: v.detach().clone() for k, v in module.named_parameters()}
    _scramble(module)
    torch.manual_seed(6)                              # another RNG state
    module.reset_parameters()
    for key, value in module.named_parameters():
        if key.startswith(RANDOM[name]):
            assert not torch.equal(value, built[key]), key       # drawn again, from the new RNG state
        else:
            assert torch.equal(value, built[key]), key           # set again (zeros, ones, kernel grid)


def _old_build(name):
    """The modules as built before ``reset_parameters`` existed (the same draws in the same order)."""
    if name == "attention":
        return {"qkv": nn.Linear(8, 24), "proj": nn.Linear(8, 8)}
    if name == "gaussian":
        return {"mlp": nn.Sequential(nn.Linear(5, 5), nn.GELU(), nn.Linear(5, 2))}
    if name == "bucket":
        dist, hops = nn.Embedding(6, 2), nn.Embedding(5, 2)
        nn.init.zeros_(dist.weight)
        nn.init.zeros_(hops.weight)
        return {"dist": dist, "hops": hops}
    if name.startswith("centrality"):
        out = {"degree": nn.Embedding(6, 8)}
        nn.init.normal_(out["degree"].weight, std=0.02)
        if name == "centrality":
            out["out_strength"], out["in_strength"] = nn.Embedding(4, 8), nn.Embedding(4, 8)
            nn.init.normal_(out["out_strength"].weight, std=0.02)
            nn.init.normal_(out["in_strength"].weight, std=0.02)
        return out
    return {}


@pytest.mark.parametrize("name", ["attention", "gaussian", "bucket", "centrality", "centrality_no_mobility"])
def test_construction_draws_what_it_drew_before_reset_parameters(name):
    torch.manual_seed(3)
    old = {f"{k}.{p}": v for k, m in _old_build(name).items() for p, v in m.state_dict().items()}
    old_next = torch.rand(4)
    torch.manual_seed(3)
    new = _state(MODULES[name]())
    assert torch.equal(torch.rand(4), old_next)
    assert all(torch.equal(new[k], v) for k, v in old.items()), name


@pytest.mark.parametrize("cfg", [
    FAST,
    FAST.replace(spatial_bias="bucket", feature_weight=0.5, final_norm=True, layers=2),
    FAST.replace(spatial_bias="none", centrality=False, mobility_bias=False),
], ids=["gaussian", "bucket_features_norm", "plain"])
def test_a_whole_model_resets_to_its_built_weights_and_keeps_its_statistics(cfg):
    data = tiny_data(n=20).validate()
    schema, stats = input_schema(data, cfg), fit_preprocessing(data, cfg)
    torch.manual_seed(9)
    model = SrelModel(cfg, schema, stats)
    built = _state(model)
    _scramble(model)
    torch.manual_seed(9)
    model.reset_parameters()
    assert _same(_state(model), built)
    torch.manual_seed(10)
    model.reset_parameters()
    assert not torch.equal(model.out.weight, built["out.weight"])
    assert all(torch.equal(v, built[k]) for k, v in model.state_dict().items() if k.startswith("prep__"))


def test_an_ensemble_resets_its_members_in_build_order():
    data = tiny_data(n=20).validate()
    cfg = FAST.replace(restarts=2)
    schema, stats = input_schema(data, cfg), fit_preprocessing(data, cfg)
    torch.manual_seed(4)
    ens = SrelEnsemble(cfg, schema, stats)
    built = _state(ens)
    _scramble(ens)
    torch.manual_seed(4)
    ens.reset_parameters()
    assert _same(_state(ens), built)
    assert not torch.equal(ens.members[0].out.weight, ens.members[1].out.weight)
