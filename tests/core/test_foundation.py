"""RegionData validation, configs, progress protocol and device choice."""
import numpy as np
import pytest
import scipy.sparse as sp

from topt_core.config import PromptConfig, SrelConfig
from topt_core.data import RegionData
from topt_core.device import resolve_device
from topt_core.errors import ToptCancelled, ToptConfigError, ToptDataError
from topt_core.progress import NullReporter, StageReporter, check_canceled


def _data(n=5, **kw):
    rng = np.random.default_rng(0)
    base = dict(region_ids=np.arange(n), centroids=rng.random((n, 2)) * 1000, areas=np.ones(n),
                poi_counts=rng.integers(0, 5, (n, 3)))
    base.update(kw)
    return RegionData(**base)


def test_validate_normalises_types():
    d = _data().validate()
    assert d.region_ids.dtype.kind == "U" and d.poi_counts.dtype == float
    assert d.poi_categories == ["poi_0", "poi_1", "poi_2"] and d.views() == ["poi"]


@pytest.mark.parametrize("kw,match", [
    (dict(region_ids=np.array([1, 1, 2, 3, 4])), "unique"),
    (dict(poi_counts=-np.ones((5, 2))), "negative"),
    (dict(poi_counts=np.full((5, 2), np.nan)), "NaN"),
    (dict(poi_counts=np.zeros((5, 2))), "No usable view"),
    (dict(mobility=sp.csr_matrix(np.ones((4, 4)))), r"\(5, 5\)"),
    (dict(centroids=np.full((5, 2), np.inf)), "geometry"),
])
def test_validate_refuses_bad_data(kw, match):
    with pytest.raises(ToptDataError, match=match):
        _data(**kw).validate()


def test_empty_and_single_region_refused():
    with pytest.raises(ToptDataError, match="no regions"):
        RegionData(np.array([]), np.zeros((0, 2)), np.zeros(0), poi_counts=np.zeros((0, 1))).validate()
    with pytest.raises(ToptDataError, match="1 region"):
        _data(n=1).validate()


def test_targets_are_cleaned_and_dropped_for_stage1():
    d = _data(targets={"y": [1, np.inf, np.nan, 4, 5]}).validate()
    assert np.isnan(d.targets["y"][1]) and np.isnan(d.targets["y"][2])
    assert d.without_targets().targets == {}


def test_config_round_trip_and_validation():
    c = SrelConfig(epochs=7)
    assert SrelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ToptConfigError, match="epochs"):
        SrelConfig(epochs=0)
    with pytest.raises(ToptConfigError, match="unknown settings"):
        SrelConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(ToptConfigError, match="schema version"):
        PromptConfig.from_dict({"schema_version": 99})


def test_stage_reporter_rescales_and_cancel():
    seen = []

    class R(NullReporter):
        def set_progress(self, p):
            seen.append(p)

        def is_canceled(self):
            return len(seen) > 1

    r = R()
    s = StageReporter(r, 50, 100)
    s.set_progress(50)
    assert seen == [75.0]
    check_canceled(s)
    s.set_progress(100)
    with pytest.raises(ToptCancelled):
        check_canceled(s)


def test_device_auto_reports_a_reason(monkeypatch):
    monkeypatch.delenv("TOPT_DEVICE", raising=False)
    choice = resolve_device("auto")
    assert choice.device in ("cpu", "cuda") and choice.reason.startswith("auto")
    assert resolve_device("cpu").device == "cpu"
    with pytest.raises(ToptConfigError, match="not known"):
        resolve_device("tpu")


def test_cuda_request_without_cuda_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.delenv("TOPT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ToptConfigError, match="DEVICE=cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").device == "cpu"


def test_env_var_overrides_device(monkeypatch):
    """TOPT_DEVICE decides the device whatever the parameter says, in both directions, and the engine
    then runs there."""
    import torch

    from srel_fixtures import FAST, tiny_data
    from topt_core.srel import train_srel

    with monkeypatch.context() as m:               # a machine that has a GPU
        m.setattr(torch.cuda, "is_available", lambda: True)
        m.setattr(torch.cuda, "device_count", lambda: 1)
        m.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
        m.setenv("TOPT_DEVICE", "cpu")
        for spec in ("auto", "cuda", "cuda:0", "cpu"):
            choice = resolve_device(spec)
            assert choice.device == "cpu" and "TOPT_DEVICE" in choice.reason, (spec, choice)
        m.setenv("TOPT_DEVICE", "cuda:0")
        assert resolve_device("cpu").device == "cuda:0" and resolve_device("auto").device == "cuda:0"
        m.setenv("TOPT_DEVICE", "tpu")
        with pytest.raises(ToptConfigError, match="TOPT_DEVICE"):
            resolve_device("cpu")
    monkeypatch.setenv("TOPT_DEVICE", "cpu")       # DEVICE=cuda would be refused on a machine without one
    res = train_srel(tiny_data(n=12), FAST.replace(epochs=1, device="cuda"))
    assert res.device.device == "cpu" and "TOPT_DEVICE" in res.device.reason
    assert {p.device.type for p in res.model.parameters()} == {"cpu"}
