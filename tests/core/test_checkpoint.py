"""Saved SREL folders: round trip, and every way a folder can be wrong is refused."""
import json

import numpy as np
import pytest

from srel_fixtures import FAST, tiny_data
from topt_core import checkpoint
from topt_core.checkpoint import load_region_data
from topt_core.errors import ToptCheckpointError, ToptDataError
from topt_core.srel import embed, load_model, save_model, train_srel


@pytest.fixture(scope="module")
def trained():
    data = tiny_data()
    return data, train_srel(data, FAST)


@pytest.fixture
def saved(trained, tmp_path):
    data, r = trained
    return save_model(r, tmp_path / "model", data=data)


def test_round_trip_reproduces_embeddings(trained, saved):
    data, r = trained
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors", "region_data.safetensors"]
    m = load_model(saved)
    assert not m.training and m.config == r.model.config
    np.testing.assert_array_equal(embed(m, data), r.embeddings)


def test_manifest_content(saved):
    man = json.loads((saved / "config.json").read_text())
    assert man["format"] == "topt-srel" and man["schema_version"] == checkpoint.SCHEMA_VERSION
    assert man["config"]["embed_dim"] == FAST.embed_dim and "created" in man and "topt_version" in man
    s = man["input_schema"]
    from topt_core import views
    from topt_core.config import SrelConfig

    want = [v.name for v in views.model_inputs(tiny_data(), SrelConfig())]
    assert want[:4] == ["poi", "landuse", "mobility", "extra"]          # + geometry, context when its POIs are sparse
    assert s["views"] == want and s["n_regions"] == 24
    assert s["poi_categories"][0] == "cat0" and s["crs"] == "EPSG:32618"
    assert set(man["files"]) == {"model.safetensors", "region_data.safetensors"}
    assert all(len(h) == 64 for h in man["files"].values())


def test_region_data_round_trip_without_labels(trained, saved):
    data, _ = trained
    back = load_region_data(saved)
    assert back.targets == {}
    np.testing.assert_array_equal(back.region_ids, data.region_ids)
    np.testing.assert_allclose(back.centroids, data.centroids)
    np.testing.assert_allclose(back.mobility.toarray(), data.mobility.toarray())
    np.testing.assert_allclose(back.extra, data.extra)
    np.testing.assert_array_equal(back.adjacency, data.adjacency)
    assert back.poi_categories == data.poi_categories and back.crs == data.crs


def test_model_without_region_data(trained, tmp_path):
    data, r = trained
    folder = save_model(r.model, tmp_path / "m")
    assert load_region_data(folder) is None
    np.testing.assert_array_equal(embed(load_model(folder), data), r.embeddings)


def test_tampered_weights_refused(saved):
    raw = bytearray((saved / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (saved / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ToptCheckpointError, match="sha256"):
        load_model(saved)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_missing_file_refused(saved, name):
    (saved / name).unlink()
    with pytest.raises(ToptCheckpointError, match="missing|no config.json"):
        load_model(saved)


def test_missing_folder_refused(tmp_path):
    with pytest.raises(ToptCheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")


@pytest.mark.parametrize("name", ["evil.pkl", "weights.pt", "x.pickle", "pytorch_model.bin"])
def test_pickle_files_refused(saved, name):
    (saved / name).write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ToptCheckpointError, match="pickle"):
        load_model(saved)


@pytest.mark.parametrize("key,value,match", [
    ("format", "topt-prompt", "format"),
    ("schema_version", 99, "schema version"),
    ("topt_version", "7.0.0", "major"),
])
def test_wrong_manifest_refused(saved, key, value, match):
    man = json.loads((saved / "config.json").read_text())
    man[key] = value
    (saved / "config.json").write_text(json.dumps(man))
    with pytest.raises(ToptCheckpointError, match=match):
        load_model(saved)


def test_invalid_json_refused(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ToptCheckpointError, match="not valid JSON"):
        load_model(saved)


def test_shape_mismatch_refused(saved):
    man = json.loads((saved / "config.json").read_text())
    man["config"]["hidden_dim"] = 32
    (saved / "config.json").write_text(json.dumps(man))
    with pytest.raises(ToptCheckpointError, match="do not fit"):
        load_model(saved)


def test_embed_refuses_other_schema(saved):
    m = load_model(saved)
    with pytest.raises(ToptDataError, match="views"):
        embed(m, tiny_data(views=("poi", "landuse")))
    other = tiny_data()
    other.poi_categories = [f"x{i}" for i in range(5)]
    with pytest.raises(ToptDataError, match="POI categories"):
        embed(m, other)


def test_summary_model_embeds_a_different_city(trained, saved):
    """A loaded model embeds another city (30 regions, not 24) exactly as the trained one does; the
    embedding follows the regions when they are reordered and reads each region's own data."""
    m = load_model(saved)
    emb = embed(m, tiny_data(n=30, seed=5))
    assert emb.shape == (30, FAST.embed_dim) and np.isfinite(emb).all()
    np.testing.assert_array_equal(emb, embed(trained[1].model, tiny_data(n=30, seed=5)))
    assert np.abs(emb - emb.mean(0)).mean() > 1e-3                          # regions differ
    perm = np.random.default_rng(1).permutation(30)
    moved = embed(m, tiny_data(n=30, seed=5).validate().subset(perm))
    np.testing.assert_allclose(moved, emb[perm], rtol=0, atol=1e-5)       # no dependence on row order
    busier = tiny_data(n=30, seed=5)
    busier.poi_counts[0] *= 5
    changed = np.abs(embed(m, busier) - emb).max(1)
    assert changed[0] > 1e-3 and changed[0] == changed.max()              # region 0 moves most


def test_save_refuses_folder_with_pickles(trained, tmp_path):
    folder = tmp_path / "dirty"
    folder.mkdir()
    (folder / "old.pt").write_bytes(b"x")
    with pytest.raises(ToptCheckpointError, match="pickle"):
        save_model(trained[1], folder)


def test_model_folder_from_before_the_derived_views_loads_and_embeds_the_same(tmp_path):
    """A folder written before the geometry/context views existed (its config has no such keys, its schema
    lists only the user's views) still loads and gives the same embeddings: the derived views that new
    data offers are ignored by a model that never read them."""
    data = tiny_data()
    r = train_srel(data, FAST.replace(geometry_view="off", context_view="off"))
    folder = save_model(r, tmp_path / "old", data=data)
    man = json.loads((folder / "config.json").read_text())
    cfg = man["config"]
    for key in ("geometry_view", "context_view", "geometry_weight", "context_weight"):
        cfg.pop(key)
    assert man["input_schema"]["views"] == ["poi", "landuse", "mobility", "extra"]
    (folder / "config.json").write_text(json.dumps(man))
    m = load_model(folder)
    assert m.config.geometry_view == "auto"               # the new default, yet the model reads no geometry
    assert [v.name for v in m.view_units] == ["poi", "landuse", "mobility", "extra"]
    np.testing.assert_array_equal(embed(m, data), r.embeddings)
