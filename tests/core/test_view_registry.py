"""Adding a view is one module plus one registry line: a toy view travels through the whole engine and the
file front door (io + CLI; its inputs still need a wrapper until the doors loop over the registry)."""
import re

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
    from topt_core.config import SrelConfig

    assert views.names() == ["poi", "landuse", "mobility", "extra", "geometry", "context"]
    data = tiny_data().validate()
    assert [v.name for v in views.present(data)] == ["poi", "landuse", "mobility", "extra"]   # the user's views
    on = SrelConfig(context_view="on", geometry_view="on")
    assert [v.name for v in views.model_inputs(data, on)] == ["poi", "landuse", "mobility", "extra", "geometry",
                                                             "context"]
    off = SrelConfig(geometry_view=False, context_view="off")
    assert [v.name for v in views.model_inputs(data, off)] == ["poi", "landuse", "mobility", "extra"]


def test_context_view_auto_follows_how_sparse_the_pois_are():
    """auto: on when the median region holds fewer than 10 POIs (real OSM extracts), off for dense counts."""
    from topt_core.config import SrelConfig

    data = tiny_data().validate()
    sparse = data.subset(np.arange(data.n))
    sparse.poi_counts = np.minimum(data.poi_counts, 1.0) * (np.arange(data.n) % 3 == 0)[:, None]
    dense = data.subset(np.arange(data.n))
    dense.poi_counts = data.poi_counts + 20.0
    names = lambda d: [v.name for v in views.model_inputs(d, SrelConfig())]  # noqa: E731
    assert "context" in names(sparse) and "geometry" in names(sparse)
    assert "context" not in names(dense) and "geometry" not in names(dense)
    assert "(sparse)" in views.derived_note(sparse, SrelConfig()) and "(dense)" in views.derived_note(dense, SrelConfig())


def roads_files(folder, n=24, seed=0):
    """A GeoPackage a user could have: region squares with two road-length fields, and POI points."""
    import geopandas as gpd
    from shapely.geometry import Point, box

    rng = np.random.default_rng(seed)
    x0, y0, side = 585000.0, 4511000.0, 500.0
    cells = [(x0 + (i % 5) * side, y0 + (i // 5) * side) for i in range(n)]
    roads = rng.gamma(2.0, 300.0, (n, 2))
    regions = gpd.GeoDataFrame({"region_id": [f"r{i}" for i in range(n)], "road_primary": roads[:, 0],
                                "road_residential": roads[:, 1], "crime": rng.random(n) * 100},
                               geometry=[box(x, y, x + side, y + side) for x, y in cells], crs="EPSG:32618")
    k = rng.integers(0, n, 200)
    pois = gpd.GeoDataFrame({"category": [f"cat{j}" for j in rng.integers(0, 5, 200)]}, crs="EPSG:32618",
                            geometry=[Point(cells[i][0] + rng.uniform(1, side - 1), cells[i][1] + rng.uniform(1, side - 1))
                                      for i in k])
    path = folder / "city.gpkg"
    regions.to_file(path, layer="regions", driver="GPKG")
    pois.to_file(path, layer="pois", driver="GPKG")
    return path, roads


def read_with_roads(read):
    """``io.read_region_data`` plus the road fields of the region file as the roads view's table.

    The front doors do not take a new view's inputs from the registry yet (issue 20: a view declares its
    front-door inputs, the doors loop over the registry), so this wrapper is the one step a user cannot do
    without code; everything else below goes through the CLI."""
    def read_region_data(regions, **kw):
        data, gdf = read(regions, **kw)
        cols = [c for c in gdf.columns if str(c).startswith("road_")]
        data.tables["roads"] = Table(gdf[cols].to_numpy(dtype=float), [c[len("road_"):] for c in cols])
        return data.validate(), gdf
    return read_region_data


def test_a_toy_view_trains_saves_loads_embeds_and_is_described(with_roads, tmp_path, monkeypatch, capsys):
    """The toy view through the file front door: ``python -m topt_core train`` on a GeoPackage (its
    encoder, SSL decoder, statistics and stored table in the model folder, the embeddings in the output
    layer), then ``predict`` with that model folder (the regions described from its stored roads)."""
    from topt_core import io
    from topt_core.__main__ import main
    from topt_core.prompt.describe import describe_regions
    from topt_core.srel import embed, load_model
    from tests.tiny_encoder import source as tiny_source

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):       # main() sets them; leave the process as it was
        monkeypatch.setenv(var, "1")
    gpkg, roads = roads_files(tmp_path)
    monkeypatch.setattr(io, "read_region_data", read_with_roads(io.read_region_data))
    emb_file, model_dir = tmp_path / "emb.gpkg", tmp_path / "model"
    assert main(["train", "--regions", f"{gpkg}:regions", "--region-id", "region_id", "--pois", f"{gpkg}:pois",
                 "--poi-category", "category", "--epochs", "6", "--restarts", "1", "--device", "cpu",
                 "--output", str(emb_file), "--model-dir", str(model_dir)]) == 0
    model = load_model(model_dir)
    assert model.views[0] == "poi" and model.views[-1] == "roads"          # the registry's order, roads last
    assert "roads" in model.encoders and "roads" in model.decoders            # its encoder and its SSL decoder
    assert model.schema["columns.roads"] == ["primary", "residential"]
    assert model.schema["dims"]["roads"] == 6                                 # log1p + linear of 2 columns + total
    assert {"roads.center", "roads.scale"} <= set(model.stats())              # its statistics travel as buffers
    data, _ = io.read_region_data(f"{gpkg}:regions", region_id="region_id", pois=f"{gpkg}:pois",
                                  poi_category="category")
    assert data.views()[0] == "poi" and data.views()[-1] == "roads" and set(data.views()) <= set(model.views)
    layer = io.read_layer(str(emb_file))
    np.testing.assert_array_equal(io.embedding_matrix(layer, "emb_"), embed(model, data))
    stored = load_region_data(model_dir)
    np.testing.assert_array_equal(stored.tables["roads"].values, roads)
    assert stored.subset([3, 1]).tables["roads"].values.tolist() == roads[[3, 1]].tolist()
    text = describe_regions(stored)[0]
    assert text.startswith("Included POIs") and "Roads:" in text and "primary" in text
    capsys.readouterr()
    report = tmp_path / "report.html"
    assert main(["predict", "--input", str(emb_file), "--target", "crime", "--model-dir", str(model_dir),
                 "--text-encoder", tiny_source("bert"), "--folds", "2", "--device", "cpu",
                 "--output", str(tmp_path / "pred.gpkg"), "--report", str(report)]) == 0
    said = "".join(capsys.readouterr())
    assert re.search(r"stored views \(poi, [^)]*roads\)", said), said
    assert "Roads:" in report.read_text(encoding="utf-8")
    assert np.isfinite(io.read_layer(str(tmp_path / "pred.gpkg"))["pred_crime"]).all()


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
