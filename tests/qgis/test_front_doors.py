"""Both front doors from one declaration per view (issue 20): ``processing.run("topt:train_regions")`` and
``python -m topt_core train`` expose the registry's view inputs, accept them, refuse bad ones alike and give the
same model input and embeddings; a view added to the registry (``tests/toy_view.py``) gets both doors for free."""
import numpy as np
import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingParameterField

from tests.toy_view import add_to_registry, roads_files
from topt_test_helpers import LU_FIELDS, uri

EXTRA = ["area_km2", "service_call_count"]
# what both doors can set (the CLI exposes fewer hyperparameters; the rest stay at SrelConfig's defaults in both)
QGIS_SMALL = {"EMBED_DIM": 16, "EPOCHS": 3, "RESTARTS": 1, "DEVICE": "cpu", "SEED": 7}
CLI_SMALL = ["--embed-dim", "16", "--epochs", "3", "--restarts", "1", "--device", "cpu", "--seed", "7"]


@pytest.fixture
def cli(monkeypatch):
    """``python -m topt_core ...`` in this process (so a patched registry applies); (exit status, stderr)."""
    from topt_core.__main__ import main

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):       # main() sets them; leave the process as it was
        monkeypatch.setenv(var, "1")

    def run(*args):
        return main([str(a) for a in args])
    return run


def qgis(params):
    import processing

    return processing.run("topt:train_regions", params)


def same_model_input_and_embeddings(a, b):
    """Two (output layer, model folder) pairs: the same input schema and statistics, the same stored region
    data, the same embeddings."""
    from topt_core import io, views
    from topt_core.checkpoint import load_region_data
    from topt_core.srel import load_model

    (emb_a, dir_a), (emb_b, dir_b) = a, b
    ma, mb = load_model(dir_a), load_model(dir_b)
    assert ma.views == mb.views and ma.schema == mb.schema
    sa, sb = ma.stats(), mb.stats()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(np.asarray(sa[k]), np.asarray(sb[k]), err_msg=k)
    da, db = load_region_data(dir_a), load_region_data(dir_b)
    assert da.region_ids.tolist() == db.region_ids.tolist()
    for view in views.REGISTRY:
        if view.derived:
            continue
        va, vb = view.get(da), view.get(db)
        assert (va is None) == (vb is None), view.name
        if va is not None:
            dense = lambda m: m.toarray() if hasattr(m, "toarray") else np.asarray(m)  # noqa: E731
            np.testing.assert_array_equal(dense(va), dense(vb), err_msg=view.name)
    ea = io.embedding_matrix(io.read_layer(str(emb_a)), "emb_")
    eb = io.embedding_matrix(io.read_layer(str(emb_b)), "emb_")
    np.testing.assert_allclose(ea, eb, rtol=0, atol=1e-6)
    return ma


def test_extra_fields_through_both_doors_give_the_same_model_input_and_embeddings(topt_provider, sample_copy,
                                                                                  tmp_path, cli):
    """EXTRA_FIELDS (QGIS) and --extra-fields (CLI) on the bundled sample, with POIs, OD and land-use fields."""
    q_out, q_dir, c_out, c_dir = tmp_path / "q.gpkg", tmp_path / "qm", tmp_path / "c.gpkg", tmp_path / "cm"
    qgis({"REGIONS": uri(sample_copy, "regions"), "REGION_ID_FIELD": "region_id",
          "POIS": uri(sample_copy, "pois"), "POI_CATEGORY_FIELD": "category",
          "MOBILITY": uri(sample_copy, "od"), "MOBILITY_ORIGIN_FIELD": "origin_id",
          "MOBILITY_DESTINATION_FIELD": "destination_id", "MOBILITY_COUNT_FIELD": "trips",
          "LANDUSE_FIELDS": LU_FIELDS, "EXTRA_FIELDS": EXTRA, **QGIS_SMALL,
          "OUTPUT": str(q_out), "OUTPUT_MODEL": str(q_dir)})
    assert cli("train", "--regions", f"{sample_copy}:regions", "--region-id", "region_id",
               "--pois", f"{sample_copy}:pois", "--poi-category", "category", "--od", f"{sample_copy}:od",
               "--od-origin", "origin_id", "--od-destination", "destination_id", "--od-count", "trips",
               "--landuse-fields", ",".join(LU_FIELDS), "--extra-fields", ",".join(EXTRA), *CLI_SMALL,
               "--output", c_out, "--model-dir", c_dir) == 0
    model = same_model_input_and_embeddings((q_out, q_dir), (c_out, c_dir))
    assert model.views[:4] == ["poi", "landuse", "mobility", "extra"] and model.schema["extra_names"] == EXTRA


def test_bad_extra_fields_are_refused_alike_by_both_doors(topt_provider, sample_copy, tmp_path, cli, capsys):
    """Same check, same words; only the parameter's name is each door's own (EXTRA_FIELDS / --extra-fields)."""
    base = {"REGIONS": uri(sample_copy, "regions"), "REGION_ID_FIELD": "region_id", **QGIS_SMALL,
            "OUTPUT": str(tmp_path / "q.gpkg"), "OUTPUT_MODEL": str(tmp_path / "qm")}
    for fields in (["area_km2", "neighbourhood"], ["no_such_field"]):
        with pytest.raises(QgsProcessingException) as exc:
            qgis({**base, "EXTRA_FIELDS": fields})
        capsys.readouterr()
        assert cli("train", "--regions", f"{sample_copy}:regions", "--region-id", "region_id", "--extra-fields",
                   ",".join(fields), *CLI_SMALL, "--output", tmp_path / "c.gpkg", "--model-dir", tmp_path / "cm") == 2
        said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")][-1]
        if fields[-1] == "neighbourhood":
            expected = ("{}: the field 'neighbourhood' is of type String; expected numeric fields. Choose numeric "
                        "fields (or convert it with the Field Calculator).")
            assert str(exc.value) == expected.format("EXTRA_FIELDS")
            assert said == "error: " + expected.format("--extra-fields")
        else:
            assert "EXTRA_FIELDS: the field 'no_such_field' is not in the region layer" in str(exc.value)
            assert "--extra-fields: the field 'no_such_field' is not in the layer" in said
    assert not any(p.name in ("q.gpkg", "c.gpkg", "qm", "cm") for p in tmp_path.iterdir())


def test_a_view_added_to_the_registry_gets_both_front_doors(topt_provider, tmp_path, monkeypatch, cli):
    """One module (tests/toy_view.py) and one registry line: the QGIS dialog and help gain ROAD_FIELDS, the CLI
    --road-fields; processing.run and the CLI accept it and train the same model, which holds the roads view."""
    add_to_registry(monkeypatch)
    alg = QgsApplication.processingRegistry().createAlgorithmById("topt:train_regions")
    p = alg.parameterDefinition("ROAD_FIELDS")
    assert isinstance(p, QgsProcessingParameterField) and p.allowMultiple() and p.parentLayerParameterName() == "REGIONS"
    assert p.description() == "Road length fields" and "metres of road of each class" in alg.shortHelpString()
    gpkg, roads = roads_files(tmp_path)
    q_out, q_dir, c_out, c_dir = tmp_path / "q.gpkg", tmp_path / "qm", tmp_path / "c.gpkg", tmp_path / "cm"
    road_fields = ["road_primary", "road_residential"]
    qgis({"REGIONS": uri(gpkg, "regions"), "REGION_ID_FIELD": "region_id", "POIS": uri(gpkg, "pois"),
          "POI_CATEGORY_FIELD": "category", "ROAD_FIELDS": road_fields, **QGIS_SMALL,
          "OUTPUT": str(q_out), "OUTPUT_MODEL": str(q_dir)})
    assert cli("train", "--regions", f"{gpkg}:regions", "--region-id", "region_id", "--pois", f"{gpkg}:pois",
               "--poi-category", "category", "--road-fields", ",".join(road_fields), *CLI_SMALL,
               "--output", c_out, "--model-dir", c_dir) == 0
    model = same_model_input_and_embeddings((q_out, q_dir), (c_out, c_dir))
    assert model.views[:2] == ["poi", "roads"] and "roads" in model.encoders and "roads" in model.decoders
    assert model.schema["columns.roads"] == road_fields
    from topt_core.checkpoint import load_region_data

    np.testing.assert_array_equal(load_region_data(q_dir).tables["roads"].values, roads)
    with pytest.raises(QgsProcessingException, match="ROAD_FIELDS: the field 'label' is of type String"):
        qgis({"REGIONS": uri(gpkg, "regions"), "ROAD_FIELDS": ["label"], **QGIS_SMALL,
              "OUTPUT": str(tmp_path / "bad.gpkg"), "OUTPUT_MODEL": str(tmp_path / "bad")})
