"""Adding a view is one module plus one registry line: a toy view travels through the whole engine."""
import numpy as np
import pytest

from srel_fixtures import FAST, tiny_data
from topt_core import views
from topt_core.checkpoint import load_region_data
from topt_core.errors import ToptDataError
from topt_core.views import Table, TableView


class RoadView(TableView):
    """What a new view module would hold (e.g. topt_core/views/roads.py)."""

    name, label, unit, facet_lead = "roads", "Road lengths", "road metres", "Roads"


@pytest.fixture
def with_roads(monkeypatch):
    monkeypatch.setattr(views, "REGISTRY", views.REGISTRY + (RoadView(),))     # the one registry line


def road_data(n=24, seed=0):
    data = tiny_data(n=n, views=("poi",), seed=seed)
    rng = np.random.default_rng(seed + 1)
    data.tables["roads"] = Table(rng.gamma(2.0, 300.0, (n, 2)), ["primary", "residential"])
    return data


def test_registry_lists_the_built_in_views_in_order():
    assert views.names() == ["poi", "landuse", "mobility", "extra"]
    assert [v.name for v in views.present(tiny_data().validate())] == ["poi", "landuse", "mobility", "extra"]


def test_a_toy_view_trains_saves_loads_embeds_and_is_described(with_roads, tmp_path):
    from topt_core.prompt.describe import describe_regions
    from topt_core.srel import embed, load_model, save_model, train_srel

    data = road_data().validate()
    assert data.views() == ["poi", "roads"]
    res = train_srel(data, FAST)
    model = res.model
    assert "roads" in model.encoders and "roads" in model.decoders            # its encoder and its SSL decoder
    assert model.schema["columns.roads"] == ["primary", "residential"]
    assert model.schema["dims"]["roads"] == 6                                 # log1p + linear of 2 columns + total
    assert {"roads.center", "roads.scale"} <= set(model.stats())              # its statistics travel as buffers
    save_model(res, tmp_path / "m", data=data)
    again = load_model(tmp_path / "m")
    np.testing.assert_array_equal(embed(again, data), res.embeddings)
    stored = load_region_data(tmp_path / "m")
    np.testing.assert_array_equal(stored.tables["roads"].values, data.tables["roads"].values)
    assert stored.subset([3, 1]).tables["roads"].values.tolist() == data.tables["roads"].values[[3, 1]].tolist()
    text = describe_regions(data)[0]
    assert text.startswith("Included POIs") and "Roads:" in text and "primary" in text


def test_a_toy_view_with_other_columns_is_refused(with_roads, tmp_path):
    from topt_core.srel import embed, train_srel

    res = train_srel(road_data().validate(), FAST)
    other = road_data()
    other.tables["roads"] = Table(other.tables["roads"].values, ["motorway", "residential"])
    with pytest.raises(ToptDataError, match="Road lengths columns"):
        embed(res.model, other)
    bad = road_data()
    bad.tables["roads"].values[0, 0] = -1.0
    with pytest.raises(ToptDataError, match="Road lengths contain negative values"):
        bad.validate()
