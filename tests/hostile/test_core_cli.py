"""Hostile cases through the engine and the command line (python -m topt_core): exit 2, one error line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from topt_core.errors import ToptConfigError, ToptResourceError

from .conftest import assert_refusal, snapshot
from tests.tiny_encoder import source as tiny_source

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample" / "manhattan.gpkg"


# -- memory -----------------------------------------------------------------------------------------

def test_dense_attention_estimate_refuses_a_huge_layer_before_allocating():
    from topt_core.config import SrelConfig
    from topt_core.srel import estimate_dense_memory
    from topt_core.srel.memory import check_memory

    cfg = SrelConfig()
    small, big = estimate_dense_memory(1000, cfg), estimate_dense_memory(100_000, cfg)
    assert big > 1000 * small / 2, "the estimate must grow ~N²"
    with pytest.raises(ToptResourceError) as exc:
        check_memory(100_000, cfg, "cpu")
    msg = str(exc.value)
    assert_refusal(msg, ["100000 regions", "GB", "dense-attention limit"], expected=False)
    assert "fewer regions" in msg


def test_train_srel_refuses_when_the_memory_probe_says_too_little(monkeypatch):
    from tests.core.srel_fixtures import FAST, tiny_data
    from topt_core.srel import memory
    from topt_core.srel import train as srel_train

    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 10 * 2 ** 20)
    called = []
    monkeypatch.setattr(srel_train, "SrelModel", lambda *a, **k: called.append(1))
    with pytest.raises(ToptResourceError) as exc:
        srel_train.train_srel(tiny_data(12), FAST)
    assert_refusal(str(exc.value), ["needs about", "only 0.0 GB is available on cpu"], expected=False)
    assert not called, "the model was built before the memory check"


# -- device -----------------------------------------------------------------------------------------

def test_device_cuda_without_cuda_and_auto_fallback(monkeypatch):
    import torch

    from topt_core.device import resolve_device

    monkeypatch.delenv("TOPT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ToptConfigError) as exc:
        resolve_device("cuda")
    assert_refusal(str(exc.value), "DEVICE=cuda was requested", expected=False)
    assert "DEVICE=cpu" in str(exc.value)
    choice = resolve_device("auto")
    assert choice.device == "cpu" and "auto:" in choice.reason and "CPU" in choice.reason
    monkeypatch.setenv("TOPT_DEVICE", "gpu")
    with pytest.raises(ToptConfigError) as exc:
        resolve_device("cpu")
    assert_refusal(str(exc.value), ["'gpu'", "is not known", "unset TOPT_DEVICE"])


# -- command line -----------------------------------------------------------------------------------

def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "topt_core", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT, timeout=300)


def _one_error_line(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0][len("error: "):]


def test_cli_missing_regions_file(tmp_path):
    before = snapshot(tmp_path)
    proc = _cli("train", "--regions", tmp_path / "nope.gpkg", "--output", tmp_path / "o.gpkg",
                "--model-dir", tmp_path / "m")
    assert_refusal(_one_error_line(proc), "does not exist")
    assert snapshot(tmp_path) == before


def test_cli_pois_all_outside_leaves_nothing(tmp_path):
    import geopandas as gpd
    from shapely.geometry import Point, box

    regions = gpd.GeoDataFrame({"rid": [1, 2, 3]}, geometry=[box(i, 0, i + 1, 1) for i in range(3)],
                               crs="EPSG:32618")
    regions.to_file(tmp_path / "in.gpkg", layer="regions", driver="GPKG")
    pois = gpd.GeoDataFrame({"cat": ["a", "b"]}, geometry=[Point(50, 50), Point(60, 60)], crs="EPSG:32618")
    pois.to_file(tmp_path / "in.gpkg", layer="pois", driver="GPKG")
    from .conftest import sha

    digest = sha(tmp_path / "in.gpkg")
    before = snapshot(tmp_path)
    proc = _cli("train", "--regions", f"{tmp_path / 'in.gpkg'}:regions", "--pois", f"{tmp_path / 'in.gpkg'}:pois",
                "--poi-category", "cat", "--epochs", "2", "--embed-dim", "8", "--device", "cpu",
                "--output", tmp_path / "out" / "o.gpkg", "--model-dir", tmp_path / "out" / "m")
    assert_refusal(_one_error_line(proc), "no usable view")
    assert "2 of 2 POI points lie outside every region" in proc.stderr
    assert snapshot(tmp_path) == before
    assert sha(tmp_path / "in.gpkg") == digest


def test_cli_output_parent_is_a_file(tmp_path):
    (tmp_path / "blocker").write_text("x")
    proc = _cli("train", "--regions", f"{SAMPLE}:regions", "--landuse-fields", "lu_00,lu_01", "--epochs", "1",
                "--embed-dim", "8", "--device", "cpu", "--output", tmp_path / "blocker" / "o.gpkg",
                "--model-dir", tmp_path / "m")
    msg = _one_error_line(proc)
    assert_refusal(msg, ["is a file, not a folder", "blocker"])
    assert not (tmp_path / "m").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_cli_predict_constant_target(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    n = 12
    df = gpd.GeoDataFrame({"region_id": range(n), "y": [2.0] * n,
                           **{f"emb_{k:03d}": np.random.default_rng(k).normal(size=n) for k in range(3)}},
                          geometry=[box(i, 0, i + 1, 1) for i in range(n)], crs="EPSG:32618")
    df.to_file(tmp_path / "emb.gpkg", driver="GPKG")
    before = snapshot(tmp_path)
    proc = _cli("predict", "--input", tmp_path / "emb.gpkg", "--target", "y", "--text-encoder", tiny_source("bert"),
                "--device", "cpu", "--output", tmp_path / "pred.gpkg")
    assert_refusal(_one_error_line(proc), "same value")
    assert snapshot(tmp_path) == before
