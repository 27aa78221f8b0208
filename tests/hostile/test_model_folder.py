"""Hostile model folders (issue 6): other version, missing/tampered files, planted pickles.

A saved model is config.json + *.safetensors; loading checks format, versions and sha256 and never
unpickles anything. The pickle payloads below create a marker file if they are ever unpickled.
"""
from __future__ import annotations

import json
import pickle
import shutil

import pytest

from topt_core.errors import ToptCheckpointError

from .conftest import assert_clear_message, assert_refusal

pytestmark = pytest.mark.hostile


class Evil:
    """Unpickling this creates (opens for writing) the marker file: code execution on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    from tests.core.srel_fixtures import FAST, tiny_data
    from topt_core.srel import save_model, train_srel

    data = tiny_data(n=12).validate()
    res = train_srel(data, FAST.replace(epochs=2))
    folder = tmp_path_factory.mktemp("model") / "m"
    save_model(res, folder, data=data)
    return folder, data, res


@pytest.fixture
def model_copy(trained_model, tmp_path):
    folder, data, _ = trained_model
    dst = tmp_path / "model"
    shutil.copytree(folder, dst)
    return dst, data


def _edit_manifest(folder, **changes):
    cfg = folder / "config.json"
    m = json.loads(cfg.read_text())
    m.update(changes)
    cfg.write_text(json.dumps(m))


def _load(folder):
    from topt_core.srel import load_model

    return load_model(folder)


def test_intact_copy_loads(model_copy, trained_model):
    """A copied folder gives back the trained model: its config and schema, every weight and buffer
    bit for bit, the same embeddings, and the regions it was trained on."""
    import numpy as np
    import torch

    from topt_core.checkpoint import load_region_data
    from topt_core.srel import embed

    folder, data = model_copy
    res = trained_model[2]
    model = _load(folder)
    assert not model.training
    assert model.config == res.model.config and model.schema == res.model.schema
    want, got = res.model.state_dict(), model.state_dict()
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    np.testing.assert_array_equal(embed(model, data), res.embeddings)
    stored = load_region_data(folder)
    assert list(stored.region_ids) == list(data.region_ids) and stored.views() == data.views()
    np.testing.assert_array_equal(stored.poi_counts, data.poi_counts)
    assert (stored.mobility != data.mobility).nnz == 0


def test_folder_from_another_topt_version(model_copy):
    folder, _ = model_copy
    _edit_manifest(folder, topt_version="99.0.0")
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), ["99.0.0", "major versions differ"], expected=False)


def test_folder_with_another_schema_version(model_copy):
    folder, _ = model_copy
    _edit_manifest(folder, schema_version=7)
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), "schema version 7", expected=False)


def test_folder_with_missing_weights(model_copy):
    folder, _ = model_copy
    (folder / "model.safetensors").unlink()
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), ["model.safetensors is missing", "incomplete"], expected=False)


def test_folder_without_config(model_copy):
    folder, _ = model_copy
    (folder / "config.json").unlink()
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), "no config.json")


def test_folder_with_corrupt_config(model_copy):
    folder, _ = model_copy
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), "not valid JSON")


def test_tampered_weights_file(model_copy):
    folder, _ = model_copy
    w = folder / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), "does not match its sha256")


def test_manifest_pointing_outside_the_folder(model_copy):
    folder, _ = model_copy
    m = json.loads((folder / "config.json").read_text())
    m["files"]["../../etc/passwd"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(m))
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_clear_message(str(exc.value), "plain *.safetensors names", "retrain")


def test_planted_pickle_file_is_refused_and_never_loaded(model_copy, tmp_path):
    folder, _ = model_copy
    marker = tmp_path / "PWNED"
    (folder / "extra_weights.pkl").write_bytes(pickle.dumps(Evil(marker)))
    (folder / "optimizer.pt").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), ["pickle-capable", "extra_weights.pkl"])
    assert not marker.exists(), "a pickle was executed while loading the model"


def test_pickle_disguised_as_safetensors_with_a_matching_hash(model_copy, tmp_path):
    """The attacker also rewrites the sha256 in config.json: safetensors parsing refuses, nothing runs."""
    from topt_core.checkpoint import sha256_file

    folder, _ = model_copy
    marker = tmp_path / "PWNED"
    w = folder / "model.safetensors"
    w.write_bytes(pickle.dumps(Evil(marker)))
    m = json.loads((folder / "config.json").read_text())
    m["files"]["model.safetensors"] = sha256_file(w)
    (folder / "config.json").write_text(json.dumps(m))
    with pytest.raises(ToptCheckpointError) as exc:
        _load(folder)
    assert_refusal(str(exc.value), "not a readable safetensors file", expected=False)
    assert not marker.exists(), "a pickle was executed while loading the model"
    # region data too
    from topt_core.checkpoint import load_region_data

    r = folder / "region_data.safetensors"
    r.write_bytes(pickle.dumps(Evil(marker)))
    m["files"]["region_data.safetensors"] = sha256_file(r)
    (folder / "config.json").write_text(json.dumps(m))
    with pytest.raises(ToptCheckpointError):
        load_region_data(folder)
    assert not marker.exists()


def test_saving_into_a_folder_with_a_pickle_refuses(trained_model, tmp_path):
    from tests.core.srel_fixtures import FAST, tiny_data
    from topt_core.srel import save_model, train_srel

    folder = tmp_path / "dirty"
    folder.mkdir()
    (folder / "old.pkl").write_bytes(b"x")
    data = tiny_data(n=12).validate()
    res = train_srel(data, FAST.replace(epochs=1))
    with pytest.raises(ToptCheckpointError) as exc:
        save_model(res, folder, data=data)
    assert "pickle-capable" in str(exc.value)
    assert not (folder / "model.safetensors").exists()


# -- through the algorithm ------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["pickle", "tampered", "version", "missing"])
def test_predict_with_a_damaged_model_folder(run_alg, model_copy, tmp_path, damage):
    import numpy as np

    from .conftest import TINY_PREDICT, snapshot
    from .helpers import regions_layer

    folder, data = model_copy
    marker = tmp_path / "PWNED"
    if damage == "pickle":
        (folder / "weights.pkl").write_bytes(pickle.dumps(Evil(marker)))
    elif damage == "tampered":
        w = folder / "region_data.safetensors"
        raw = bytearray(w.read_bytes())
        raw[-3] ^= 0x55
        w.write_bytes(bytes(raw))
    elif damage == "version":
        _edit_manifest(folder, topt_version="0.0.1-other" if False else "42.1")
    else:
        (folder / "region_data.safetensors").unlink()
    n = data.n
    y = [float(i % 5) if i % 3 else None for i in range(n)]
    lyr = regions_layer(n, ids=[str(x) for x in data.region_ids], id_type="string",
                        extra={"y": ("double", y)})
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    res, msg, fb = run_alg("topt:predict_regions", {"INPUT": lyr, "TARGET_FIELD": "y", "MODEL": str(folder),
                                                    "REGION_ID_FIELD": "id", **TINY_PREDICT,
                                                    "OUTPUT": str(out / "p.gpkg"),
                                                    "OUTPUT_REPORT": str(out / "r.html")})
    assert res is None
    assert_refusal(msg, {"pickle": "pickle-capable", "tampered": "sha256", "version": "42.1",
                         "missing": "is missing"}[damage], expected=damage in ("pickle", "tampered"))
    assert not fb.errors
    assert not marker.exists()
    assert snapshot(tmp_path) == before
