"""The file front door (topt_core.io, python -m topt_core) on the bundled sample."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from topt_core import io
from topt_core.files import atomic_file, atomic_folder
from topt_core.errors import ToptDataError
from tests.tiny_encoder import source as tiny_source

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample" / "manhattan.gpkg"
LU = [f"lu_{i:02d}" for i in range(11)]


@pytest.fixture(scope="module")
def sample_data():
    data, gdf = io.read_region_data(
        f"{SAMPLE}:regions", region_id="region_id", pois=f"{SAMPLE}:pois", poi_category="category",
        od=f"{SAMPLE}:od", od_origin="origin_id", od_destination="destination_id", od_count="trips",
        landuse_fields=LU, targets=["crime_count"])
    return data, gdf


def test_sample_views_equal_the_benchmark_arrays(sample_data, shared_data):
    from topt_core.benchmark import load_manhattan

    data, _ = sample_data
    ref = load_manhattan(shared_data)
    assert list(data.region_ids) == list(ref.region_ids)
    cols = [int(c.split("_")[1]) for c in data.poi_categories]
    assert np.array_equal(data.poi_counts, ref.poi_counts[:, cols])
    assert ref.poi_counts[:, [j for j in range(ref.poi_counts.shape[1]) if j not in cols]].sum() == 0
    assert np.array_equal(data.landuse, ref.landuse)
    assert (data.mobility != ref.mobility).nnz == 0
    np.testing.assert_allclose(data.centroids, ref.centroids, atol=1e-3)
    np.testing.assert_allclose(data.areas, ref.areas, rtol=1e-9)
    assert data.crs == "EPSG:32618"
    np.testing.assert_array_equal(data.targets["crime_count"], ref.targets["crime"])


def test_both_front_doors_give_the_same_model_input_and_embedding(sample_data, shared_data):
    """The arrays have 26 POI categories, one of them empty; a point layer cannot hold an empty
    category, so the sample has 25. The model must not see the difference (issue 14)."""
    from topt_core.benchmark import load_manhattan
    from topt_core.config import SrelConfig
    from topt_core.srel import train_srel
    from topt_core.srel.inputs import input_schema

    layers, _ = sample_data
    arrays = load_manhattan(shared_data)
    assert arrays.poi_counts.shape[1] == 26 and layers.poi_counts.shape[1] == 25
    cfg = SrelConfig(device="cpu", restarts=1, epochs=3, threads=1)
    assert input_schema(arrays, cfg)["dims"] == input_schema(layers, cfg)["dims"]
    np.testing.assert_array_equal(train_srel(arrays, cfg).embeddings, train_srel(layers, cfg).embeddings)


def test_adjacency_matches_the_published_neighbour_lists(sample_data, shared_data):
    data, _ = sample_data
    gdf = io.read_layer(str(shared_data / "derived" / "mh180_regions.geojson"))
    expected = {(i, int(j)) for i, s in enumerate(gdf["neighbors"]) for j in str(s).split(";") if j}
    got = set(map(tuple, data.adjacency.T.tolist()))
    assert expected <= got
    assert len(got - expected) / len(got) < 0.05


def test_write_layer_is_atomic_and_refuses_bad_paths(sample_data, tmp_path):
    _, gdf = sample_data
    out = io.write_layer(gdf.iloc[:5], {"x": np.arange(5.0)}, tmp_path / "out.gpkg")
    back = io.read_layer(str(out))
    assert list(back["x"]) == [0, 1, 2, 3, 4] and len(back.columns) == len(gdf.columns) + 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.gpkg"]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(ToptDataError, match="not writable"):
            io.write_layer(gdf.iloc[:5], {"x": np.arange(5.0)}, ro / "out.gpkg")
    finally:
        ro.chmod(0o755)


def test_output_under_a_file_is_refused(sample_data, tmp_path):
    _, gdf = sample_data
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ToptDataError, match="Cannot create the output folder"):
        io.write_layer(gdf.iloc[:5], {"x": np.arange(5.0)}, tmp_path / "afile" / "out.gpkg")


def test_atomic_helpers_leave_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "model") as d:
            (d / "config.json").write_text("{}")
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "r.html") as f:
            f.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("the user's")                 # not a model file: kept
    (tmp_path / "model" / "old.safetensors").write_text("old weights")          # a model file: replaced
    (tmp_path / "model" / "config.json").write_text("{}")
    with atomic_folder(tmp_path / "model") as d:
        (d / "config.json").write_text('{"new": 1}')
        (d / "model.safetensors").write_text("new weights")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors",
                                                                      "notes.txt"]
    assert (tmp_path / "model" / "config.json").read_text() == '{"new": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_read_errors_are_clear(tmp_path):
    with pytest.raises(ToptDataError, match="does not exist"):
        io.read_layer(str(tmp_path / "nope.gpkg"))
    with pytest.raises(ToptDataError, match="REGION_ID_FIELD"):
        io.read_region_data(f"{SAMPLE}:regions", region_id="no_such_field")
    with pytest.raises(ToptDataError, match=r"no polygons \(it holds 24496 Point\); expected a polygon layer"):
        io.read_region_data(f"{SAMPLE}:pois")


def _cli(*args, timeout=600):
    env = dict(os.environ, PROJ_DATA="/usr/share/proj")
    return subprocess.run([sys.executable, "-m", "topt_core", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


@pytest.mark.slow
def test_cli_train_predict_cluster_and_evaluate(tmp_path):
    p = _cli("train", "--regions", f"{SAMPLE}:regions", "--region-id", "region_id", "--pois", f"{SAMPLE}:pois",
             "--poi-category", "category", "--landuse-fields", ",".join(LU), "--epochs", "5", "--embed-dim", "16",
             "--device", "cpu", "--output", tmp_path / "emb.gpkg", "--model-dir", tmp_path / "model",
             "--links", tmp_path / "links.gpkg", "--links-per-region", "3")
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout)
    links = io.read_layer(str(tmp_path / "links.gpkg"))
    assert 170 * 3 <= len(links) <= 180 * 3 and links["weight"].between(0, 1, inclusive="right").all()
    assert set(links["target_id"].astype(str)) == {str(i) for i in io.read_layer(f"{SAMPLE}:regions")["region_id"]}
    assert links.groupby("target_id")["weight"].sum().max() <= 1 + 1e-6
    assert summary["regions"] == 180 and summary["epochs_run"] == 5 and summary["device"].startswith("cpu")
    emb = io.embedding_matrix(io.read_layer(str(tmp_path / "emb.gpkg")))
    assert emb.shape == (180, 16) and np.isfinite(emb).all()
    assert (tmp_path / "model" / "model.safetensors").exists()
    p = _cli("predict", "--input", tmp_path / "emb.gpkg", "--target", "crime_count", "--task", "crime",
             "--model-dir", tmp_path / "model", "--text-encoder", tiny_source("bert"), "--device", "cpu",
             "--output", tmp_path / "pred.gpkg", "--evidence", tmp_path / "ev.gpkg", "--report", tmp_path / "p.html")
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert res["labelled"] == 180 and set(res["metrics"]) == {"mae", "rmse", "r2"}
    pred = io.read_layer(str(tmp_path / "pred.gpkg"))
    assert pred["why"].str.startswith(("routes:", "labelled neighbours")).all()
    assert (tmp_path / "p.html").read_text().count("data:image/png;base64,") == 6       # 4 maps, 2 plots
    ev = io.read_layer(str(tmp_path / "ev.gpkg"))
    assert list(ev.columns[:3]) == ["source_id", "target_id", "weight"] and (ev["source_id"] != ev["target_id"]).all()
    assert np.isfinite(pred["pred_crime_count"].to_numpy(dtype=float)).all() and pred["is_labelled"].sum() == 180
    p = _cli("cluster", "--input", tmp_path / "emb.gpkg", "--k", "4", "--output", tmp_path / "cl.gpkg")
    assert p.returncode == 0, p.stderr[-3000:]
    assert sum(json.loads(p.stdout)["sizes"]) == 180
    p = _cli("evaluate", "--input", tmp_path / "emb.gpkg", "--targets", "crime_count,checkin_count",
             "--cluster-labels", "cd_label", "--report", tmp_path / "e.html")
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert (tmp_path / "e.html").read_text().count("alt='residual map'") == 2
    assert set(res["crime_count"]) == {"mae", "rmse", "r2"} and 0 <= res["clustering"]["nmi"] <= 1


def test_cli_error_is_one_line_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type":"FeatureCollection","features":[]}')
    p = _cli("train", "--regions", empty, "--output", tmp_path / "o.gpkg", "--model-dir", tmp_path / "m")
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error:") and "Traceback" not in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["empty.geojson"]


def test_landuse_polygons_give_area_shares_and_od_lines_locate_ends(tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString, Point, box

    crs = "EPSG:32618"
    regions = gpd.GeoDataFrame({"rid": [10, 11]}, geometry=[box(0, 0, 100, 100), box(100, 0, 200, 100)], crs=crs)
    regions.to_file(tmp_path / "r.gpkg", layer="regions", driver="GPKG")
    lu = gpd.GeoDataFrame({"cls": ["park", "housing", None]},
                          geometry=[box(0, 0, 50, 100), box(50, 0, 150, 100), box(150, 0, 200, 100)], crs=crs)
    lu.to_file(tmp_path / "lu.gpkg", layer="lu", driver="GPKG")
    od = gpd.GeoDataFrame({"n": [3.0, 2.0, 7.0]}, crs=crs, geometry=[
        LineString([(10, 10), (150, 50)]), LineString([(150, 50), (20, 20)]), LineString([(10, 10), (500, 500)])])
    od.to_file(tmp_path / "od.gpkg", layer="od", driver="GPKG")
    warnings = []

    class R:
        def warning(self, m):
            warnings.append(m)

        def info(self, m):
            pass

        def set_progress(self, p):
            pass

        def set_text(self, t):
            pass

        def is_canceled(self):
            return False

    data, _ = io.read_region_data(f"{tmp_path / 'r.gpkg'}:regions", region_id="rid",
                                  landuse=f"{tmp_path / 'lu.gpkg'}:lu", landuse_class="cls",
                                  od=f"{tmp_path / 'od.gpkg'}:od", od_count="n", reporter=R())
    assert data.landuse_classes == ["housing", "park"]
    np.testing.assert_allclose(data.landuse, [[0.5, 0.5], [0.5, 0.0]], atol=1e-5)
    assert data.mobility.toarray().tolist() == [[0, 3], [2, 0]]
    assert "1 of 4 land-use pieces have an empty class; they were left out." in warnings   # housing spans 2 regions
    assert "1 of 3 OD records lie outside every region; they were left out." in warnings
