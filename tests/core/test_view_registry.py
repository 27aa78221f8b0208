"""Adding a view is one module plus one registry line (``tests/toy_view.py``): the toy view declares its
front-door inputs and travels through the whole engine and the file front door (the CLI exposes and accepts
``--road-fields``, ``io.read_region_data`` takes ``road_fields=``) with no other edit. The QGIS door and the
two doors side by side: ``tests/qgis/test_front_doors.py``."""
import re

import numpy as np
import pytest

from srel_fixtures import FAST, tiny_data
from tests.toy_view import RoadView, add_to_registry, roads_files
from topt_core import views
from topt_core.checkpoint import load_region_data
from topt_core.errors import ToptDataError
from topt_core.views import Table


@pytest.fixture
def with_roads(monkeypatch):
    add_to_registry(monkeypatch)     # the one registry line


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


ROAD_FIELDS = ["road_primary", "road_residential"]


def test_a_toy_view_trains_saves_loads_embeds_and_is_described(with_roads, tmp_path, monkeypatch, capsys):
    """The toy view through the file front door, no wrapper: ``python -m topt_core train --road-fields ...`` on
    a GeoPackage (its encoder, SSL decoder, statistics and stored table in the model folder, the embeddings in
    the output layer), then ``predict`` with that model folder (the regions described from its stored roads)."""
    from topt_core import io
    from topt_core.__main__ import _parser, main
    from topt_core.prompt.describe import describe_regions
    from topt_core.srel import embed, load_model
    from tests.tiny_encoder import source as tiny_source

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):       # main() sets them; leave the process as it was
        monkeypatch.setenv(var, "1")
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--road-fields" in shown and "metres of road of each class" in shown          # its flag and help line
    gpkg, roads = roads_files(tmp_path)
    emb_file, model_dir = tmp_path / "emb.gpkg", tmp_path / "model"
    assert main(["train", "--regions", f"{gpkg}:regions", "--region-id", "region_id", "--pois", f"{gpkg}:pois",
                 "--poi-category", "category", "--road-fields", ",".join(ROAD_FIELDS), "--epochs", "6",
                 "--restarts", "1", "--device", "cpu", "--output", str(emb_file), "--model-dir", str(model_dir)]) == 0
    model = load_model(model_dir)
    assert model.views[:2] == ["poi", "roads"]                                # the registry's order: the user's views
    assert "roads" in model.encoders and "roads" in model.decoders            # its encoder and its SSL decoder
    assert model.schema["columns.roads"] == ROAD_FIELDS
    assert model.schema["dims"]["roads"] == 6                                 # log1p + linear of 2 columns + total
    assert {"roads.center", "roads.scale"} <= set(model.stats())              # its statistics travel as buffers
    data, _ = io.read_region_data(f"{gpkg}:regions", region_id="region_id", pois=f"{gpkg}:pois",
                                  poi_category="category", road_fields=ROAD_FIELDS)
    assert data.views() == ["poi", "roads"] and set(data.views()) <= set(model.views)
    layer = io.read_layer(str(emb_file))
    np.testing.assert_array_equal(io.embedding_matrix(layer, "emb_"), embed(model, data))
    stored = load_region_data(model_dir)
    np.testing.assert_array_equal(stored.tables["roads"].values, roads)
    assert stored.subset([3, 1]).tables["roads"].values.tolist() == roads[[3, 1]].tolist()
    text = describe_regions(stored)[0]
    assert text.startswith("Included POIs") and "Roads:" in text and "road_primary" in text
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


def test_a_toy_views_bad_input_is_refused_by_the_file_door_as_by_qgis(with_roads, tmp_path, monkeypatch, capsys):
    """The toy view's input gets the checks of its join kind (region fields: present and numeric), worded with
    the CLI's flag; ``tests/qgis/test_front_doors.py`` checks the QGIS door says the same with ROAD_FIELDS."""
    from topt_core import io
    from topt_core.__main__ import main

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):       # main() sets them; leave the process as it was
        monkeypatch.setenv(var, "1")
    gpkg, _ = roads_files(tmp_path)
    with pytest.raises(ToptDataError, match=r"--road-fields: the field 'label' is of type String; expected numeric "
                                            r"fields\. Choose numeric fields"):
        io.read_region_data(f"{gpkg}:regions", region_id="region_id", road_fields=["road_primary", "label"])
    with pytest.raises(ToptDataError, match="--road-fields: the field 'nope' is not in the layer"):
        io.read_region_data(f"{gpkg}:regions", region_id="region_id", road_fields="nope")
    with pytest.raises(TypeError, match="unknown view inputs \\['roads_fields'\\]"):
        io.read_region_data(f"{gpkg}:regions", region_id="region_id", roads_fields=["road_primary"])
    capsys.readouterr()
    assert main(["train", "--regions", f"{gpkg}:regions", "--road-fields", "label", "--output",
                 str(tmp_path / "o.gpkg"), "--model-dir", str(tmp_path / "m")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --road-fields: the field 'label' is of type String")
    assert not (tmp_path / "o.gpkg").exists() and not (tmp_path / "m").exists()


def test_view_inputs_need_their_own_names(monkeypatch):
    """Two views may not declare the same QGIS id or CLI flag: the doors would mix their inputs."""
    from topt_core.views import inputs
    from topt_core.views.inputs import Param, Source

    class Clash(RoadView):
        name = "clash"
        sources = (Source("region_fields", (Param("EXTRA_FIELDS", "--clash-fields", "fields", "x", "y"),),
                          RoadView.sources[0].build),)

    monkeypatch.setattr(views, "REGISTRY", views.REGISTRY + (Clash(),))
    with pytest.raises(ValueError, match="'EXTRA_FIELDS' is already used by view 'extra'"):
        inputs.params()
    with pytest.raises(ValueError, match="first parameter must be of kind 'layer'"):
        Source("points", (Param("X_FIELD", "--x-field", "field", "x", "y"),), RoadView.sources[0].build)

