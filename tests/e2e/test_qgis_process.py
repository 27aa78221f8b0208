"""End-to-end: the real qgis_process binary, the plugin loaded from the checkout."""
import sqlite3
import subprocess
import sys
import zipfile

import pytest

from .conftest import ROOT, SAMPLE, QgisProcess
from tests.tiny_encoder import source as tiny_source

pytestmark = pytest.mark.e2e

ALGORITHMS = ("topt:train_regions", "topt:predict_regions", "topt:evaluate_embeddings", "topt:cluster_regions")


def test_list_shows_every_topt_algorithm(qgis_process):
    out = qgis_process("list").stdout
    for alg in ALGORITHMS:
        assert alg in out, f"{alg} missing from qgis_process list:\n{out[-3000:]}"


def test_help_has_real_text(qgis_process):
    out = qgis_process("help", "topt:train_regions").stdout
    for word in ("REGIONS", "POIS", "MOBILITY", "DEVICE", "OUTPUT_MODEL", "emb_"):
        assert word in out, f"{word!r} not in help text"
    assert len(out) > 1500


def _gpkg_columns(path, table=None):
    con = sqlite3.connect(str(path))
    try:
        if table is None:
            table = con.execute("select table_name from gpkg_contents where data_type='features'").fetchone()[0]
        cols = [r[1] for r in con.execute(f'pragma table_info("{table}")')]
        n = con.execute(f'select count(*) from "{table}"').fetchone()[0]
        return cols, n
    finally:
        con.close()


def test_train_then_predict_on_sample_through_qgis_process(qgis_process, sample_gpkg, tmp_path):
    out = tmp_path / "emb.gpkg"
    model = tmp_path / "model"
    res = qgis_process.run_json("topt:train_regions", {
        "REGIONS": f"{sample_gpkg}|layername=regions", "REGION_ID_FIELD": "region_id",
        "POIS": f"{sample_gpkg}|layername=pois", "POI_CATEGORY_FIELD": "category",
        "EPOCHS": 15, "SEED": 1, "DEVICE": "cpu", "OUTPUT": out, "OUTPUT_MODEL": model})
    cols, n = _gpkg_columns(out)
    assert n == 180
    assert "emb_000" in cols and "region_id" in cols and "crime_count" in cols
    assert (model / "config.json").exists() and (model / "model.safetensors").exists()
    assert res["results"]["OUTPUT_MODEL"]
    assert res["results"]["DEVICE"] == "cpu" and "CPU requested" in res["results"]["DEVICE_REASON"]

    pred = tmp_path / "pred.gpkg"
    report = tmp_path / "report.html"
    res = qgis_process.run_json("topt:predict_regions", {
        "INPUT": out, "TARGET_FIELD": "crime_count", "TASK": "crime", "TEXT_ENCODER": tiny_source("bert"),
        "MODEL": model, "OUTPUT": pred, "OUTPUT_REPORT": report})
    cols, n = _gpkg_columns(pred)
    assert n == 180 and "pred_crime_count" in cols and "is_labelled" in cols
    for key in ("MAE", "RMSE", "R2"):
        assert isinstance(res["results"][key], float)
    assert "<table" in report.read_text(encoding="utf-8")


def test_failure_gives_rc_1_and_a_clear_message(qgis_process, tmp_path):
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type":"FeatureCollection","features":[]}')
    proc = qgis_process("run", "topt:train_regions", "--", f"REGIONS={empty}", f"OUTPUT={tmp_path / 'o.gpkg'}",
                        f"OUTPUT_MODEL={tmp_path / 'm'}", check=False)
    assert proc.returncode == 1
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    # what was wrong, what was expected, how to fix it
    assert "The region layer has no features; expected at least 2 polygons. Check the layer" in text, text[-2000:]
    assert not (tmp_path / "o.gpkg").exists()


def test_plugin_zip_installs_and_loads(tmp_path):
    zpath = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py")], capture_output=True, text=True,
                           check=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        assert all(n.startswith("topt/") for n in names)
        assert "topt/metadata.txt" in names and "topt/__init__.py" in names
        assert not [n for n in names if n.startswith(("topt/tests/", "topt/bench/", "topt/.venv/")) or
                    "__pycache__" in n]
        plugins = tmp_path / "plugins"
        zf.extractall(plugins)
    # only the unpacked copy is on the plugin path, not the checkout
    qp = QgisProcess(tmp_path / "profile", extra_env={"TOPT_PLUGIN_SOURCE": str(plugins)})
    out = qp("list").stdout
    for alg in ALGORITHMS:
        assert alg in out


def test_provider_loads_without_the_venv_and_names_what_is_missing(tmp_path):
    """QGIS's own Python has no torch: `list` still works, `run` refuses with the install command."""
    qp = QgisProcess(tmp_path / "profile")
    qp.env.pop("PYTHONPATH", None)
    qp.env["TOPT_NO_VENV"] = "1"                  # scripts/env.sh then leaves the project venv out
    out = qp("list").stdout
    assert "topt:train_regions" in out
    proc = qp("run", "topt:train_regions", "--", f"REGIONS={SAMPLE}|layername=regions", "LANDUSE_FIELDS=lu_00",
              f"OUTPUT={tmp_path / 'o.gpkg'}", f"OUTPUT_MODEL={tmp_path / 'm'}", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Missing Python packages" in text and "pip install" in text and "torch" in text
