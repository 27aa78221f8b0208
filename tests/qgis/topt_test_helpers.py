"""Helpers and settings shared by the pytest-qgis tests of the topt algorithms.

Fast settings everywhere (tiny SREL, few epochs, 3 folds, the tiny random text
encoder) so the whole folder runs in about a minute; one test uses the real
default encoder. The sample GeoPackage is copied once per session so the
checked-in file is never opened for writing.
"""
import hashlib
import os
from pathlib import Path
from tests.tiny_encoder import source as tiny_source

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample" / "manhattan.gpkg"
LU_FIELDS = [f"lu_{i:02d}" for i in range(11)]
# prompt encodings are cached between runs (the cache is keyed by model and text)
os.environ.setdefault("TOPT_CACHE_DIR", str(ROOT / ".cache" / "topt-tests"))

FAST_SREL = {"EMBED_DIM": 16, "HIDDEN_DIM": 16, "LAYERS": 1, "HEADS": 2, "EPOCHS": 5, "DEVICE": "cpu", "SEED": 7}
FAST_PROMPT = {"TEXT_ENCODER": tiny_source("bert"), "FOLDS": 3, "EPOCHS": 10, "DEVICE": "cpu"}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def uri(gpkg, layer):
    return f"{gpkg}|layername={layer}"


def sample_params(gpkg):
    return {"REGIONS": uri(gpkg, "regions"), "REGION_ID_FIELD": "region_id",
            "POIS": uri(gpkg, "pois"), "POI_CATEGORY_FIELD": "category",
            "MOBILITY": uri(gpkg, "od"), "MOBILITY_ORIGIN_FIELD": "origin_id",
            "MOBILITY_DESTINATION_FIELD": "destination_id", "MOBILITY_COUNT_FIELD": "trips",
            "LANDUSE_FIELDS": LU_FIELDS}


def as_layer(value, context=None):
    """A processing.run result (path, layer id or layer) as a QgsVectorLayer."""
    from qgis.core import QgsVectorLayer

    if isinstance(value, QgsVectorLayer):
        return value
    layer = QgsVectorLayer(str(value), "out", "ogr")
    assert layer.isValid(), f"cannot open {value}"
    return layer


