"""The C allocator's policy while stage 1 trains on the CPU: freed memory is kept for the next epoch.

Each epoch at city scale allocates and frees the same few hundred MB-sized tensors. glibc serves blocks
above its mmap threshold (at most 32 MB) with fresh ``mmap`` pages and unmaps them on free, so every
epoch page-faults its whole working set again: at 40 000 regions that was 44 % of an epoch (8.6 -> 4.8 s,
bench/RESULTS.md, issue 21). While training, ``keep_freed_memory`` serves every block from the heap and
keeps what is freed (``mallopt``: no mmap, trim only above 1 GiB); afterwards it puts the defaults back
and returns the free heap to the system (``malloc_trim``). The price is a higher peak (about a quarter
more at 40 000 regions, still under the mode's estimate), so it is used only when the estimate fits. Results are bit-identical: only where
memory comes from changes. Off glibc (macOS, Windows, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4            # glibc's mallopt parameters (malloc.h)
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_TRIM_THRESHOLD = 1 << 30
#: peak memory with freed blocks kept, relative to the mode's estimate. The estimates are conservative enough
#: to cover the raised peak: 1.58 GB measured against 1.90 GB estimated at 10 000 regions, 5.12 against 6.22 GB
#: at 40 000, 11.5 against 14.7 GB at 100 000 (bench/RESULTS.md, issue 21); raise this if a measured peak ever
#: exceeds its estimate.
PEAK_FACTOR = 1.0


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


class keep_freed_memory:
    """Context for a training run: ``active`` says whether the policy is on (glibc and ``wanted``)."""

    def __init__(self, wanted: bool = True):
        self.libc = _glibc() if wanted else None
        self.active = False

    def __enter__(self):
        if self.libc is not None:
            self.active = bool(self.libc.mallopt(M_MMAP_MAX, 0)) and \
                bool(self.libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD))
        return self

    def __exit__(self, *exc):
        if self.libc is not None:
            self.libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            self.libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            self.libc.malloc_trim(0)
        return False


def worth_it(device: str, n: int, need: int, available: int | None, small_n: int) -> bool:
    """Keep freed memory for a CPU run over more than ``small_n`` regions whose raised peak still fits."""
    if not str(device).startswith("cpu") or n <= small_n:
        return False
    return available is None or need * PEAK_FACTOR <= available
