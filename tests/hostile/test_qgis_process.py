"""A sample of the hostile matrix through the real qgis_process binary (slow: ~5-10 s per call)."""
from __future__ import annotations

import pickle

import pytest

from tests.e2e.conftest import QgisProcess

from .conftest import sha, snapshot
from tests.tiny_encoder import source as tiny_source

pytestmark = [pytest.mark.hostile, pytest.mark.e2e]


@pytest.fixture(scope="module")
def qp(tmp_path_factory):
    return QgisProcess(tmp_path_factory.mktemp("qgis-profile-hostile"))


def _regions_file(path, crs="EPSG:32618", bowtie=False, driver="GPKG"):
    import geopandas as gpd
    from shapely.geometry import Point, Polygon, box

    geoms = [box(583000 + 200 * (i % 4), 4508000 + 200 * (i // 4), 583200 + 200 * (i % 4),
                 4508200 + 200 * (i // 4)) for i in range(12)]
    if bowtie:
        geoms[-1] = Polygon([(583000, 4509000), (583200, 4509200), (583200, 4509000), (583000, 4509200)])
    gpd.GeoDataFrame({"rid": range(1, 13)}, geometry=geoms, crs=crs).to_file(path, driver=driver,
                                                                             **({"layer": "regions"} if driver == "GPKG" else {}))
    pts = [Point(583050 + 200 * (i % 4) + 20 * j, 4508050 + 200 * (i // 4)) for i in range(12) for j in range(3)]
    return pts


def _check_failure(proc, *words):
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-1500:], proc.stderr[-1500:])
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-3000:]
    for w in words:
        assert w.lower() in text.lower(), f"{w!r} not in qgis_process output:\n{text[-3000:]}"


def test_qgis_process_regions_without_crs(qp, tmp_path):
    shp = tmp_path / "in" / "regions.shp"
    shp.parent.mkdir()
    _regions_file(shp, driver="ESRI Shapefile")
    shp.with_suffix(".prj").unlink()
    before = snapshot(tmp_path)
    proc = qp("run", "topt:train_regions", "--", f"REGIONS={shp}", "LANDUSE_FIELDS=rid", "EPOCHS=2",
              "DEVICE=cpu", f"OUTPUT={tmp_path / 'o.gpkg'}", f"OUTPUT_MODEL={tmp_path / 'm'}", check=False)
    _check_failure(proc, "has no CRS", "DISTANCE_CRS")
    assert snapshot(tmp_path) == before


def test_qgis_process_output_parent_is_a_file(qp, tmp_path):
    gpkg = tmp_path / "in.gpkg"
    _regions_file(gpkg)
    (tmp_path / "blocker").write_text("x")
    before = snapshot(tmp_path)
    proc = qp("run", "topt:train_regions", "--", f"REGIONS={gpkg}|layername=regions", "EXTRA_FIELDS=rid",
              "EPOCHS=2", "DEVICE=cpu", f"OUTPUT={tmp_path / 'blocker' / 'o.gpkg'}",
              f"OUTPUT_MODEL={tmp_path / 'm'}", check=False)
    _check_failure(proc, "is a file, not a folder", "choose another output path")
    assert snapshot(tmp_path) == before


def test_qgis_process_bowtie_repaired_with_warning_and_input_unchanged(qp, tmp_path):
    gpkg = tmp_path / "in.gpkg"
    _regions_file(gpkg, bowtie=True)
    digest = sha(gpkg)
    res = qp.run_json("topt:train_regions", {"REGIONS": f"{gpkg}|layername=regions", "EXTRA_FIELDS": "rid",
                                             "EPOCHS": 2, "EMBED_DIM": 8, "HIDDEN_DIM": 8, "DEVICE": "cpu",
                                             "OUTPUT": tmp_path / "out" / "o.gpkg",
                                             "OUTPUT_MODEL": tmp_path / "out" / "m"})
    assert res["results"]["REGIONS"] == 12
    assert (tmp_path / "out" / "m" / "config.json").exists()
    assert sha(gpkg) == digest


def test_qgis_process_predict_with_a_planted_pickle(qp, tmp_path):
    from .test_model_folder import Evil

    gpkg = tmp_path / "in.gpkg"
    _regions_file(gpkg)
    res = qp.run_json("topt:train_regions", {"REGIONS": f"{gpkg}|layername=regions", "REGION_ID_FIELD": "rid",
                                             "EXTRA_FIELDS": "rid", "EPOCHS": 2, "EMBED_DIM": 8, "HIDDEN_DIM": 8,
                                             "DEVICE": "cpu", "OUTPUT": tmp_path / "emb.gpkg",
                                             "OUTPUT_MODEL": tmp_path / "m"})
    marker = tmp_path / "PWNED"
    (tmp_path / "m" / "weights.pkl").write_bytes(pickle.dumps(Evil(marker)))
    before = snapshot(tmp_path)
    proc = qp("run", "topt:predict_regions", "--", f"INPUT={res['results']['OUTPUT']}", "TARGET_FIELD=rid",
              f"MODEL={tmp_path / 'm'}", f"TEXT_ENCODER={tiny_source('bert')}", "DEVICE=cpu",
              f"OUTPUT={tmp_path / 'p.gpkg'}", f"OUTPUT_REPORT={tmp_path / 'r.html'}", check=False)
    _check_failure(proc, "pickle-capable", "weights.pkl")
    assert not marker.exists()
    assert snapshot(tmp_path) == before
