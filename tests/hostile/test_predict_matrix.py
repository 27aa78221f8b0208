"""Hostile inputs to predict_regions, evaluate_embeddings and cluster_regions (issue 6)."""
from __future__ import annotations

import numpy as np
import pytest

from .conftest import TINY_PREDICT, assert_refusal, snapshot
from .helpers import regions_layer

pytestmark = pytest.mark.hostile


def emb_layer(n=20, target=None, ttype="double", tname="y", emb_null=False, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, 4))
    extra = {f"emb_{k:03d}": ("double", [None if (emb_null and i == 0 and k == 0) else float(e[i, k])
                                         for i in range(n)]) for k in range(4)}
    if target is None:
        target = [float(3 * e[i, 0] + 5 + (i % 3)) if i % 4 else None for i in range(n)]
    extra[tname] = (ttype, target)
    return regions_layer(n, extra=extra, cols=5)


def params(alg, tmp_path, layer, **kw):
    out = tmp_path / "out"
    if alg == "predict_regions":
        p = {"INPUT": layer, "TARGET_FIELD": "y", **TINY_PREDICT, "OUTPUT": str(out / "pred.gpkg"),
             "OUTPUT_REPORT": str(out / "report.html")}
    elif alg == "evaluate_embeddings":
        p = {"INPUT": layer, "TARGET_FIELDS": ["y"], "OUTPUT": str(out / "eval.gpkg"),
             "OUTPUT_REPORT": str(out / "eval.html")}
    else:
        p = {"INPUT": layer, "K": 3, "OUTPUT": str(out / "clusters.gpkg")}
    p.update(kw)
    return p


REFUSALS = [
    ("predict_regions", "target_text", lambda: emb_layer(target=["a"] * 20, ttype="string"), {}, "type string"),
    ("predict_regions", "target_all_null", lambda: emb_layer(target=[None] * 20), {}, "no known values"),
    ("predict_regions", "fewer_labels_than_folds", lambda: emb_layer(target=[1.0, 2.0] + [None] * 18), {},
     "only 2 region(s) have a known"),
    ("predict_regions", "target_constant", lambda: emb_layer(target=[3.0] * 20), {}, "same value"),
    ("predict_regions", "embedding_with_null", lambda: emb_layer(emb_null=True), {}, "empty or non-finite"),
    ("predict_regions", "text_encoder_missing_dir", emb_layer, {"TEXT_ENCODER": "dir:/nonexistent/model"},
     "does not exist"),
    ("predict_regions", "text_encoder_hub_id", emb_layer, {"TEXT_ENCODER": "sentence-transformers/all-MiniLM-L6-v2"},
     "never downloaded from a hub"),
    ("predict_regions", "text_encoder_plain_path", emb_layer, {"TEXT_ENCODER": "/nonexistent/model"},
     "not a local source"),
    ("predict_regions", "model_folder_missing", emb_layer, {"MODEL": "/nonexistent/topt-model"}, "does not exist"),
    ("predict_regions", "target_is_embedding_field", emb_layer, {"TARGET_FIELD": "emb_000"},
     "also an embedding field"),
    ("predict_regions", "device_cuda_without_cuda", emb_layer, {"DEVICE": "cuda"}, "device=cuda"),
    ("evaluate_embeddings", "eval_target_text", lambda: emb_layer(target=["a"] * 20, ttype="string"), {},
     "holds 'a'"),
    ("evaluate_embeddings", "eval_fewer_labels_than_folds", lambda: emb_layer(target=[1.0, 2.0] + [None] * 18), {},
     "only 2 labelled regions"),
    ("evaluate_embeddings", "eval_target_constant", lambda: emb_layer(target=[3.0] * 20), {}, "same value"),
    ("evaluate_embeddings", "eval_embedding_with_null", lambda: emb_layer(emb_null=True), {},
     "empty or non-finite"),
    ("cluster_regions", "cluster_k_above_n", emb_layer, {"K": 50}, "only 20 regions"),
    ("cluster_regions", "cluster_embedding_with_null", lambda: emb_layer(emb_null=True), {}, "empty or non-finite"),
    ("cluster_regions", "cluster_no_embedding_fields", lambda: regions_layer(10), {}, "no emb_* fields"),
]


@pytest.mark.parametrize("alg,case,make,kw,what", REFUSALS, ids=[c[1] for c in REFUSALS])
def test_refuses_clearly(run_alg, tmp_path, alg, case, make, kw, what):
    if "cuda" in case:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    before = snapshot(tmp_path)
    res, msg, fb = run_alg(f"topt:{alg}", params(alg, tmp_path, make(), **kw))
    assert res is None, f"{case}: expected a refusal, got {res}"
    assert_refusal(msg, what, expected=case not in ("target_is_embedding_field", "cluster_no_embedding_fields"))
    assert not fb.errors, fb.errors
    assert snapshot(tmp_path) == before, f"{case}: outputs left behind"


def test_predict_nan_and_inf_targets_are_unknown(run_alg, tmp_path):
    from qgis.core import QgsVectorLayer

    y = [float("nan"), float("inf"), -float("inf")] + [float(i % 5) for i in range(17)]
    res, msg, fb = run_alg("topt:predict_regions", params("predict_regions", tmp_path, emb_layer(target=y)))
    assert msg is None, msg
    assert res["LABELLED"] == 17
    out = QgsVectorLayer(res["OUTPUT"], "p", "ogr")
    rows = list(out.getFeatures())
    assert len(rows) == 20
    assert [r["is_labelled"] for r in rows[:3]] == [0, 0, 0]
    assert all(np.isfinite(r["pred_y"]) for r in rows)


def test_predict_target_named_with_spaces_and_unicode(run_alg, tmp_path):
    from qgis.core import QgsVectorLayer

    res, msg, fb = run_alg("topt:predict_regions", params("predict_regions", tmp_path,
                                                          emb_layer(tname="crime rate ü"),
                                                          TARGET_FIELD="crime rate ü"))
    assert msg is None, msg
    name = res["PRED_FIELD"]
    assert name.isascii() and " " not in name
    out = QgsVectorLayer(res["OUTPUT"], "p", "ogr")
    assert out.fields().indexFromName(name) >= 0
    assert all(np.isfinite(f[name]) for f in out.getFeatures())
