"""QGIS entry point of the ToPT plugin: ``classFactory`` only, nothing heavy.

The engine lives in the top-level package ``topt_core`` inside this folder; the
folder is appended to ``sys.path`` so the same engine serves QGIS, the command
line and the tests under one module name.
"""
import os
import sys

_PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
if _PLUGIN_DIR not in sys.path:
    sys.path.append(_PLUGIN_DIR)

# before anything imports numpy: QGIS's GSL CBLAS would otherwise take numpy's matrix products
from .processing_provider import native_blas as _native_blas  # noqa: E402

_native_blas.bind_numpy_blas()


def classFactory(iface):  # noqa: N802 (QGIS API name)
    from .plugin import ToptPlugin

    return ToptPlugin(iface)
