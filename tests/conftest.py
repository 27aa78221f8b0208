"""Shared fixtures: the plugin importable as ``topt`` whatever the clone is called,
the provider registered for pytest-qgis, and the benchmark data location."""
import gc
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "nyc_manhattan180"
PLUGINS = ROOT / ".qgis-plugins"

PLUGINS.mkdir(exist_ok=True)
if not (PLUGINS / "topt").exists():
    os.symlink(ROOT, PLUGINS / "topt")
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))
os.environ.setdefault("PROJ_DATA", "/usr/share/proj")

# Property tests explore new inputs on developer runs, but CI must be reproducible:
# with CI set, hypothesis uses a fixed derandomised search.
try:
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hyp_settings.load_profile("ci")
except ImportError:  # hypothesis is a test dependency; the core tests run without it
    pass
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def topt_provider(qgis_app, qgis_processing):
    from qgis.core import QgsApplication

    from topt.processing_provider.provider import ToptProvider

    provider = ToptProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield provider
    QgsApplication.processingRegistry().removeProvider(provider)
    # Layers that tests got back from processing.run (memory outputs) must be freed while
    # QGIS is still alive; pytest-qgis calls exitQgis right after this, and a layer freed
    # later by the interpreter's final collection crashes the process (SIGSEGV at exit).
    gc.collect()


_SESSION = {"status": 0}


def pytest_sessionfinish(session, exitstatus):
    _SESSION["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without the interpreter's final clean-up, keeping pytest's exit status.

    QGIS 3.22 objects that sip still references after pytest-qgis has called
    ``exitQgis()`` are destroyed during interpreter shutdown and crash it (SIGSEGV after
    the summary line, turning a green run red). Everything pytest reports is already
    written at this point; only that teardown is skipped. ``qgis_process`` runs are not
    affected (the end-to-end tests check their exit codes).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_SESSION["status"])
