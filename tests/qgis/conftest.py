"""Fixtures for the pytest-qgis tests (helpers and fast settings: topt_test_helpers.py)."""
import shutil

import pytest

from topt_test_helpers import FAST_SREL, SAMPLE, sample_params, sha256


@pytest.fixture(scope="session")
def sample_copy(tmp_path_factory):
    if not SAMPLE.exists():
        pytest.fail(f"sample data missing: {SAMPLE} (built by scripts/build_sample.py)")
    dst = tmp_path_factory.mktemp("sample") / "manhattan.gpkg"
    shutil.copy(SAMPLE, dst)
    return dst


@pytest.fixture(scope="session")
def trained(topt_provider, sample_copy, tmp_path_factory):
    """train_regions once on the sample files: (results, embeddings gpkg, model folder, input hash before)."""
    import processing

    out = tmp_path_factory.mktemp("trained")
    before = sha256(sample_copy)
    res = processing.run("topt:train_regions", {**sample_params(sample_copy), **FAST_SREL,
                                                "OUTPUT": str(out / "emb.gpkg"), "OUTPUT_MODEL": str(out / "model")})
    return res, out / "emb.gpkg", out / "model", before


@pytest.fixture(scope="session", autouse=True)
def _collect_qgis_objects(qgis_app):
    """Free layers the tests made while QGIS still runs (a layer freed after exitQgis() segfaults)."""
    yield
    import gc

    gc.collect()
