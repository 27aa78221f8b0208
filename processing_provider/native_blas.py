"""numpy's matrix products inside QGIS run on numpy's own BLAS (OpenBLAS), not on GSL's reference CBLAS.

QGIS (``qgis_process``, the application) links ``libgslcblas`` through ``libqgis_analysis``. Its
``cblas_*`` functions sit in the process's global lookup scope, ahead of the libraries a Python extension
brings, so a numpy imported inside QGIS binds ``dot``/``matmul`` to GSL's unblocked single loop: Ridge fits
10x and large products 25x slower (measured on 2 cores; stage 2 at 10 000 regions took 62 s in
``qgis_process`` against 16 s on the command line, the same folds and figures). Importing numpy with
``RTLD_DEEPBIND`` puts numpy's own dependencies first. SciPy, scikit-learn and torch call Fortran BLAS
names or their own bundled BLAS, which GSL does not define, so only numpy needs this.

Pure ctypes/stdlib: nothing here imports QGIS, and it must run before anything imports numpy.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

STATE = {"bound": None, "numpy_was_loaded": None}


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def global_cblas() -> str | None:
    """The file that defines ``cblas_dgemm`` in the process's global scope (what a numpy loaded without
    ``RTLD_DEEPBIND`` binds to), or None when no loaded library defines it there."""
    try:
        libdl = ctypes.CDLL(ctypes.util.find_library("dl") or None)
        dladdr = libdl.dladdr
    except (OSError, AttributeError):
        return None
    try:
        addr = ctypes.cast(ctypes.CDLL(None).cblas_dgemm, ctypes.c_void_p).value
    except AttributeError:
        return None
    info = _DlInfo()
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if not dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) or not info.dli_fname:
        return None
    return info.dli_fname.decode(errors="replace")


def _is_gsl(path: str | None) -> bool:
    return bool(path) and "gslcblas" in os.path.basename(path)


def bind_numpy_blas() -> bool:
    """Import numpy with ``RTLD_DEEPBIND`` when GSL's CBLAS is in the global scope and numpy is not loaded
    yet; True when numpy's products run on its own BLAS (also when there was nothing to fix)."""
    if STATE["bound"] is not None:
        return STATE["bound"]
    STATE["numpy_was_loaded"] = "numpy" in sys.modules
    if not _is_gsl(global_cblas()) or not hasattr(os, "RTLD_DEEPBIND"):
        STATE["bound"] = not _is_gsl(global_cblas())
        return STATE["bound"]
    if STATE["numpy_was_loaded"]:
        STATE["bound"] = False     # another plugin imported numpy first, against GSL: see warning()
        return False
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import numpy  # noqa: F401  (the import is the point: its extensions bind to numpy's own BLAS)
        import numpy.linalg  # noqa: F401
    finally:
        sys.setdlopenflags(flags)
    STATE["bound"] = True
    return True


def warning() -> str | None:
    """A log line when numpy's products run on GSL's CBLAS (numpy imported before the plugin), else None."""
    if bind_numpy_blas():
        return None
    lib = global_cblas()
    return (f"numpy was imported before the ToPT plugin (by another plugin or a startup script) and binds its "
            f"matrix products to QGIS's reference CBLAS ({lib}), which runs them 10-25x slower than numpy's "
            "own BLAS; stage 2 and the spatial steps will be slow. Start QGIS with "
            "LD_PRELOAD=libopenblas.so.0 (Debian: /usr/lib/x86_64-linux-gnu/libopenblas.so.0), or load ToPT "
            "before the plugin that imports numpy.")
