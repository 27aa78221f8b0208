"""Cancel at every stage (issue 6): a feedback whose isCanceled() flips once a stage has begun.

Each run must stop with a 'Cancelled' QgsProcessingException, leave no output (not even a temporary
file) and not touch the inputs.
"""
from __future__ import annotations

import pytest

from .conftest import TINY_PREDICT, TINY_TRAIN, sha, snapshot
from .helpers import CancelAfter, points_layer, pois_in_cells, regions_layer, save_gpkg

pytestmark = pytest.mark.hostile

TRAIN_STAGES = [
    # stage, arm on (progress text or info), k further isCanceled() calls before it flips, must-have info
    ("reading_layers", None, 0, None),
    ("building_views", "Distances and areas in", 0, "Distances and areas in"),
    ("training", "Training SREL", 1, "SREL: training on"),
    ("writing", "Writing outputs", 0, "epochs in"),
]


@pytest.mark.parametrize("stage,arm,k,seen", TRAIN_STAGES, ids=[s[0] for s in TRAIN_STAGES])
def test_cancel_train_regions(run_alg, tmp_path, stage, arm, k, seen):
    inp = tmp_path / "in.gpkg"
    reg = save_gpkg(regions_layer(12), inp, "regions")
    pois = save_gpkg(points_layer(*pois_in_cells(12)), inp, "pois")
    digest = sha(inp)
    before = snapshot(tmp_path)
    fb = CancelAfter(k=k, stage=arm)
    params = {"REGIONS": reg, "POIS": pois, "POI_CATEGORY_FIELD": "category", **TINY_TRAIN, "EPOCHS": 20,
              "PATIENCE": 100, "OUTPUT": str(tmp_path / "out" / "emb.gpkg"),
              "OUTPUT_MODEL": str(tmp_path / "out" / "model")}
    res, msg, fb = run_alg("topt:train_regions", params, feedback=fb)
    assert res is None and "cancel" in msg.lower(), (res, msg)
    assert "Traceback" not in msg and not fb.errors
    if seen:
        assert any(seen in i for i in fb.infos), f"cancel came before stage {stage}: {fb.infos}"
    if stage == "training":
        assert not any("epochs in" in i for i in fb.infos), "training finished before the cancel"
    assert snapshot(tmp_path) == before, f"{stage}: something was written"
    assert sha(inp) == digest


def _emb_gpkg(path, n=20):
    import numpy as np

    rng = np.random.default_rng(0)
    e = rng.normal(size=(n, 4))
    extra = {f"emb_{k:03d}": ("double", [float(v) for v in e[:, k]]) for k in range(4)}
    extra["y"] = ("double", [float(3 * e[i, 0] + 5 + i % 3) if i % 4 else None for i in range(n)])
    return save_gpkg(regions_layer(n, extra=extra, cols=5), path, "emb")


PREDICT_STAGES = [
    ("reading_layer", None, 0, None),
    ("prompt_encoding", "distinct prompts", 0, None),
    ("head_training", "from the cache", 1, "from the cache"),
    ("writing", "Writing outputs", 0, None),
]


@pytest.mark.parametrize("stage,arm,k,seen", PREDICT_STAGES, ids=[s[0] for s in PREDICT_STAGES])
def test_cancel_predict_regions(run_alg, tmp_path, stage, arm, k, seen):
    inp = tmp_path / "emb.gpkg"
    layer = _emb_gpkg(inp)
    digest = sha(inp)
    before = snapshot(tmp_path)
    fb = CancelAfter(k=k, stage=arm)
    params = {"INPUT": layer, "TARGET_FIELD": "y", **TINY_PREDICT, "EPOCHS": 30,
              "OUTPUT": str(tmp_path / "out" / "pred.gpkg"), "OUTPUT_REPORT": str(tmp_path / "out" / "r.html")}
    res, msg, fb = run_alg("topt:predict_regions", params, feedback=fb)
    assert res is None and "cancel" in msg.lower(), (res, msg)
    assert "Traceback" not in msg and not fb.errors
    if arm:
        assert fb.armed, f"stage {stage} was never reached: texts {fb.texts}, infos {fb.infos}"
    if seen:
        assert any(seen in i for i in fb.infos)
    assert snapshot(tmp_path) == before, f"{stage}: something was written"
    assert sha(inp) == digest


@pytest.mark.parametrize("alg", ["evaluate_embeddings", "cluster_regions"])
def test_cancel_evaluate_and_cluster(run_alg, tmp_path, alg):
    inp = tmp_path / "emb.gpkg"
    layer = _emb_gpkg(inp)
    digest = sha(inp)
    before = snapshot(tmp_path)
    params = {"INPUT": layer, "OUTPUT": str(tmp_path / "out" / "o.gpkg")}
    params.update({"TARGET_FIELDS": ["y"], "PROTOCOL": "mvure-5fold", "OUTPUT_REPORT": str(tmp_path / "out" / "r.html")}
                  if alg == "evaluate_embeddings" else {"K": 3})
    res, msg, fb = run_alg(f"topt:{alg}", params, feedback=CancelAfter(k=0))
    assert res is None and "cancel" in msg.lower(), (res, msg)
    assert snapshot(tmp_path) == before
    assert sha(inp) == digest
