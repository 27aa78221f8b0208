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
    assert not ok and "Missing Python packages: torch;" in why
    # Debian's Python refuses a plain pip install (PEP 668): the hint installs into the profile's python folder
    assert "PEP 668" in why and 'pip install --target "' in why and "torch==2.13.0" in why and '"numpy<2"' in why
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


def test_install_hint_per_platform(tmp_path):
    """The command suits the Python QGIS runs: OSGeo4W shell, the macOS bundle, --target under PEP 668."""
    import subprocess
    import sys

    from topt.processing_provider.algorithms.base import install_hint

    win = install_hint(["torch", "scikit-learn"], platform="win32")
    assert "OSGeo4W Shell" in win and "python -m pip install torch==2.13.0 scikit-learn" in win
    mac = install_hint(["torch"], platform="darwin")
    assert "/Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install --user torch==2.13.0" in mac
    free = install_hint(["safetensors"], platform="linux", externally_managed=False)
    assert "-m pip install --user safetensors" in free and "PEP 668" not in free
    managed = install_hint(["safetensors"], platform="linux", externally_managed=True,
                           profile_python=str(tmp_path / "python"))
    assert f'pip install --target "{tmp_path / "python"}"' in managed
    # the managed form really is accepted by this machine's Debian Python (a plain --user install is not)
    probe = subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                            "--target", str(tmp_path / "t"), "--find-links", str(tmp_path), "six"],
                           capture_output=True, text=True)
    assert "externally-managed-environment" not in probe.stderr, probe.stderr
