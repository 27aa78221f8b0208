"""Without torch/transformers the provider still loads and the algorithms say what to install."""
import importlib.util
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException

ROOT = Path(__file__).resolve().parents[2]


def _hide(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, **k: None if n in names else real(n, *a, **k))


def test_missing_torch_refuses_with_the_install_command(topt_provider, monkeypatch):
    _hide(monkeypatch, "torch", "transformers")
    reg = QgsApplication.processingRegistry()
    ok, why = reg.algorithmById("topt:train_regions").canExecute()
    assert not ok and "torch" in why and "pip install torch" in why
    ok, why = reg.algorithmById("topt:predict_regions").canExecute()
    assert not ok and "transformers" in why and "pip install" in why
    # evaluation and clustering need only scikit-learn
    assert reg.algorithmById("topt:cluster_regions").canExecute() == (True, "")
    assert reg.algorithmById("topt:evaluate_embeddings").canExecute() == (True, "")
    import processing

    sample = f"{ROOT / 'resources' / 'sample' / 'manhattan.gpkg'}|layername=regions"
    with pytest.raises(QgsProcessingException, match="Missing Python packages: torch"):
        processing.run("topt:train_regions", {"REGIONS": sample, "LANDUSE_FIELDS": ["lu_00"],
                                              "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_MODEL": "TEMPORARY_OUTPUT"})
