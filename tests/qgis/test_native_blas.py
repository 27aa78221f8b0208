"""numpy's matrix products bind to numpy's own BLAS even where QGIS's GSL CBLAS is in the global scope.

QGIS links libgslcblas; a subprocess with it preloaded has the same global scope, and glibc's
``LD_DEBUG=bindings`` says which library each of numpy's ``cblas_dgemm`` calls was bound to.
"""
import ctypes.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GSL = next((p for p in ("/usr/lib/x86_64-linux-gnu/libgslcblas.so.0", "/lib/x86_64-linux-gnu/libgslcblas.so.0",
                        ctypes.util.find_library("gslcblas") or "") if p and os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(GSL is None or not hasattr(os, "RTLD_DEEPBIND"),
                                reason="libgslcblas (a QGIS dependency) or RTLD_DEEPBIND not available")


def _run(code: str, tmp_path) -> tuple[str, str]:
    """Run ``code`` with GSL's CBLAS preloaded; (stdout, the dynamic linker's cblas_dgemm bindings of numpy)."""
    log = tmp_path / "ld"
    env = dict(os.environ, LD_PRELOAD=GSL, LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(log),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    lines = "".join(p.read_text(errors="replace") for p in tmp_path.glob("ld.*"))
    bound = [m.group(1) for m in re.finditer(r"binding file \S*_multiarray_umath\S* \[\d+\] to (\S+) \[\d+\]: "
                                             r"normal symbol `cblas_dgemm'", lines)]
    assert bound, "the linker log shows no binding of numpy's cblas_dgemm"
    return out, bound[0]


PRODUCT = "import numpy as np; a = np.ones((64, 64)); a @ a; "


def test_numpy_binds_to_gsl_without_the_fix(tmp_path):
    """The control: a numpy imported plainly in QGIS's scope runs its products on GSL."""
    _, lib = _run(PRODUCT, tmp_path)
    assert "gslcblas" in lib


def test_bind_numpy_blas_keeps_numpy_on_its_own_blas(tmp_path):
    out, lib = _run("from processing_provider import native_blas as nb; print(nb.bind_numpy_blas()); "
                    + PRODUCT + "print(nb.warning())", tmp_path)
    assert "gslcblas" not in lib and "blas" in lib
    assert out.split() == ["True", "None"]


def test_warning_when_numpy_was_imported_first(tmp_path):
    out, lib = _run(PRODUCT + "from processing_provider import native_blas as nb; print(nb.bind_numpy_blas()); "
                    "print(nb.warning())", tmp_path)
    assert "gslcblas" in lib
    first, rest = out.split("\n", 1)
    assert first == "False" and "gslcblas" in rest and "LD_PRELOAD" in rest


def test_plugin_entry_point_binds_before_numpy(tmp_path):
    """Loading the plugin package (what QGIS does first) is enough: numpy imported after it is bound right."""
    code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('topt', {str(ROOT / '__init__.py')!r}, "
            f"submodule_search_locations=[{str(ROOT)!r}]); m = importlib.util.module_from_spec(spec); "
            "sys.modules['topt'] = m; spec.loader.exec_module(m); " + PRODUCT)
    _, lib = _run(code, tmp_path)
    assert "gslcblas" not in lib
