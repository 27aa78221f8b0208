"""Stage-1 options measured as ablations (bench/RESULTS.md, issue 18), off by default: the view fusion by
concatenation, the masked-region objective and the contrastive objective."""
import numpy as np
import pytest
import torch

from srel_fixtures import FAST, tiny_data
from topt_core.srel import train_srel
from topt_core.srel.inputs import build_inputs, fit_preprocessing, input_schema
from topt_core.srel.losses import contrastive_loss, masked_region_loss
from topt_core.srel.model import SrelModel


def _model(cfg, data):
    torch.manual_seed(0)
    model = SrelModel(cfg, input_schema(data, cfg), fit_preprocessing(data, cfg))
    return model, build_inputs(model, data, "cpu")


def test_the_defaults_build_none_of_the_optional_modules():
    data = tiny_data(n=20).validate()
    names = {k.split(".")[0] for k in _model(FAST, data)[0].state_dict()}
    assert {"view_proj", "view_score"} <= names
    assert not names & {"view_mix", "feature_decoders", "contrast_head"}


def test_concat_fusion_maps_the_views_side_by_side():
    data = tiny_data(n=20).validate()
    model, inputs = _model(FAST.replace(view_fusion="concat"), data)
    assert not hasattr(model, "view_proj")
    assert model.view_mix.in_features == len(model.views) * FAST.hidden_dim
    emb = model(inputs)
    assert emb.shape == (20, FAST.embed_dim)
    emb.sum().backward()
    assert model.view_mix.weight.grad.abs().sum() > 0


def test_masking_hides_the_drawn_regions_and_scores_only_them(monkeypatch):
    data = tiny_data(n=40).validate()
    model, inputs = _model(FAST.replace(mask_weight=1.0), data)
    seen = {}
    real_forward = SrelModel.forward

    def spy(self, inp):
        seen["features"] = {v: f.clone() for v, f in inp.features.items()}
        return real_forward(self, inp)

    monkeypatch.setattr(SrelModel, "forward", spy)
    torch.manual_seed(5)
    emb, rec = masked_region_loss(model, inputs, 0.5)
    torch.manual_seed(5)
    hidden = torch.rand(40) < 0.5
    assert 5 < int(hidden.sum()) < 35
    for v, f in seen["features"].items():
        assert torch.all(f[hidden] == 0) and torch.equal(f[~hidden], inputs.features[v][~hidden])
    expected = sum(torch.nn.functional.mse_loss(model.feature_decoders[v](emb[hidden]), inputs.features[v][hidden])
                   for v in model.views) / len(model.views)
    assert float(rec.detach()) == pytest.approx(float(expected.detach()))


def test_the_contrastive_loss_is_low_when_the_two_passes_agree():
    data = tiny_data(n=30).validate()
    cfg = FAST.replace(contrast_weight=1.0)
    model, inputs = _model(cfg, data)
    model.eval()                                    # no dropout: two passes without input dropout agree exactly
    _, same = contrastive_loss(model, inputs, cfg.replace(contrast_drop=0.0, contrast_tau=0.05))
    _, noisy = contrastive_loss(model, inputs, cfg.replace(contrast_drop=0.9, contrast_tau=0.05))
    assert float(same.detach()) < float(noisy.detach())
    assert float(same.detach()) < np.log(30)                 # below chance: every region is told apart from the others


@pytest.mark.parametrize("option", [dict(mask_weight=1.0, mask_rate=0.5), dict(contrast_weight=1.0),
                                    dict(view_fusion="concat"),
                                    dict(mask_weight=1.0, mask_rate=0.5, contrast_weight=1.0, view_fusion="concat")])
def test_each_option_trains_deterministically_and_changes_the_embedding(option):
    data = tiny_data(n=30)
    base = train_srel(data, FAST).embeddings
    a = train_srel(data, FAST.replace(**option)).embeddings
    b = train_srel(data, FAST.replace(**option)).embeddings
    assert np.array_equal(a, b) and np.isfinite(a).all()
    assert not np.allclose(a, base)
