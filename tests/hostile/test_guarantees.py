"""Guarantees of issue 6: inputs untouched, nothing half-written, existing outputs, determinism, paths."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from .conftest import TINY_PREDICT, TINY_TRAIN, assert_refusal, sha, snapshot
from .helpers import od_table, points_layer, pois_in_cells, regions_layer, save_gpkg

pytestmark = pytest.mark.hostile


def _inputs(tmp_path):
    inp = tmp_path / "in" / "city.gpkg"
    inp.parent.mkdir(parents=True)
    reg = save_gpkg(regions_layer(12), inp, "regions")
    pois = save_gpkg(points_layer(*pois_in_cells(12)), inp, "pois")
    od = save_gpkg(od_table([(1, 2, 3.0), (2, 3, -1.0)]), inp, "od")
    return inp, reg, pois, od


def _train(tmp_path, reg, pois, sub="out", **kw):
    p = {"REGIONS": reg, "POIS": pois, "POI_CATEGORY_FIELD": "category", "REGION_ID_FIELD": "id", **TINY_TRAIN,
         "OUTPUT": str(tmp_path / sub / "emb.gpkg"), "OUTPUT_MODEL": str(tmp_path / sub / "model")}
    p.update(kw)
    return p


def _values(path, prefix):
    from qgis.core import QgsVectorLayer

    lyr = QgsVectorLayer(str(path), "o", "ogr")
    names = [f.name() for f in lyr.fields() if f.name().startswith(prefix)]
    return np.asarray([[f[n] for n in names] for f in lyr.getFeatures()], dtype=float)


def test_inputs_byte_identical_after_success_failure_and_predict(run_alg, tmp_path):
    inp, reg, pois, od = _inputs(tmp_path)
    digest = sha(inp)
    res, msg, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois))
    assert msg is None, msg
    assert sha(inp) == digest, "a successful train modified its input"
    res2, msg2, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, sub="bad", MOBILITY=od,
                                                         MOBILITY_ORIGIN_FIELD="o", MOBILITY_DESTINATION_FIELD="d",
                                                         MOBILITY_COUNT_FIELD="trips"))
    assert res2 is None and "negative" in msg2
    assert sha(inp) == digest, "a failed train modified its input"
    assert not (tmp_path / "bad").exists()
    emb = res["OUTPUT"]
    emb_digest = sha(emb)
    res3, msg3, _ = run_alg("topt:predict_regions", {"INPUT": emb, "TARGET_FIELD": "id", "MODEL": res["OUTPUT_MODEL"],
                                                     "REGION_ID_FIELD": "id", **TINY_PREDICT,
                                                     "OUTPUT": str(tmp_path / "pred.gpkg")})
    assert msg3 is None, msg3
    assert sha(emb) == emb_digest, "predict modified its input layer"


def test_output_equal_to_an_input_file_is_refused(run_alg, tmp_path):
    inp, reg, pois, _ = _inputs(tmp_path)
    digest = sha(inp)
    res, msg, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, OUTPUT=str(inp)))
    assert_refusal(msg, ["same file as the input", "destroy"], expected=False)
    assert sha(inp) == digest


def test_two_outputs_on_one_path_are_refused(run_alg, tmp_path):
    inp, reg, pois, _ = _inputs(tmp_path)
    same = str(tmp_path / "out" / "x")
    res, msg, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, OUTPUT=same + ".gpkg",
                                                       OUTPUT_MODEL=same + ".gpkg"))
    assert_refusal(msg, "same path")
    assert not (tmp_path / "out").exists()


def test_existing_output_overwritten_on_success_and_untouched_on_failure(run_alg, tmp_path):
    """Decision: an existing OUTPUT file is replaced by a successful run (as every QGIS algorithm does) and
    left byte-identical by a failed or cancelled one (the layer is created only after all computation);
    an existing model folder is replaced as a whole, never mixed with the new one."""
    inp, reg, pois, _ = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    old = save_gpkg(regions_layer(3), out / "emb.gpkg", "old").split("|")[0]
    (out / "model").mkdir()
    (out / "model" / "stale.safetensors").write_bytes(b"old")
    old_digest = sha(old)
    res, msg, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, POIS=points_layer([(0.0, 0.0)], ["a"])))
    assert res is None and "no usable view" in msg.lower()
    assert sha(old) == old_digest and (out / "model" / "stale.safetensors").read_bytes() == b"old"
    res, msg, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois))
    assert msg is None, msg
    vals = _values(out / "emb.gpkg", "emb_")
    assert vals.shape == (12, 8)
    assert not (out / "model" / "stale.safetensors").exists()
    assert (out / "model" / "config.json").exists()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


def test_same_seed_same_inputs_identical_outputs(run_alg, tmp_path):
    inp, reg, pois, _ = _inputs(tmp_path)
    a, _, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, sub="a", EPOCHS=5))
    b, _, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, sub="b", EPOCHS=5))
    ea, eb = _values(a["OUTPUT"], "emb_"), _values(b["OUTPUT"], "emb_")
    assert ea.shape == (12, 8)
    assert np.array_equal(ea, eb), "same seed, same inputs, different embeddings"
    c, _, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, sub="c", EPOCHS=5, SEED=8))
    assert not np.array_equal(ea, _values(c["OUTPUT"], "emb_")), "the seed has no effect (test would be vacuous)"
    preds = []
    for sub in ("pa", "pb"):
        r, msg, _ = run_alg("topt:predict_regions", {"INPUT": a["OUTPUT"], "TARGET_FIELD": "id", **TINY_PREDICT,
                                                     "OUTPUT": str(tmp_path / sub / "p.gpkg")})
        assert msg is None, msg
        preds.append(_values(r["OUTPUT"], "pred_"))
    assert np.array_equal(preds[0], preds[1])


def test_output_parent_is_a_regular_file(run_alg, tmp_path):
    inp, reg, pois, _ = _inputs(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    before = snapshot(tmp_path)
    for kw in ({"OUTPUT": str(blocker / "emb.gpkg")}, {"OUTPUT_MODEL": str(blocker / "model")},
               {"OUTPUT_MODEL": str(blocker)}):
        res, msg, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, **kw))
        assert_refusal(msg, ("is a file, not a folder", "is an existing file"))
        assert snapshot(tmp_path) == before


@pytest.fixture
def readonly_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({proc.stderr.strip()}); as root os.access ignores modes")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_output_in_a_read_only_folder(run_alg, tmp_path, readonly_dir):
    inp, reg, pois, _ = _inputs(tmp_path)
    for kw in ({"OUTPUT": str(readonly_dir / "emb.gpkg")}, {"OUTPUT_MODEL": str(readonly_dir / "m")}):
        res, msg, _ = run_alg("topt:train_regions", _train(tmp_path, reg, pois, **kw))
        assert_refusal(msg, ["not writable", "read-only file system"])
    assert os.listdir(readonly_dir) == []
    assert not (tmp_path / "out").exists()
