"""Device choice: ``auto`` picks CUDA when torch can use it, else CPU.

The decision always comes with a reason in words, because "why isn't my GPU
used" is the first question users ask. ``TOPT_DEVICE`` overrides the
parameter for batch and ``qgis_process`` runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ToptConfigError, ToptDependencyError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu", "cuda" or "cuda:N", usable as torch.device(...)
    reason: str

    def __str__(self) -> str:
        return f"{self.device} ({self.reason})"


def require_torch():
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ToptDependencyError(
            "PyTorch is not installed, but training and prediction need it; "
            "install it with: python -m pip install torch (CPU build: add "
            "--index-url https://download.pytorch.org/whl/cpu)."
        ) from exc
    return torch


def resolve_device(spec: str | None = "auto") -> DeviceChoice:
    """Turn ``auto|cpu|cuda|cuda:N`` into a device and a reason."""
    env = os.environ.get("TOPT_DEVICE")
    source = "DEVICE parameter"
    if env:
        spec, source = env, "TOPT_DEVICE environment variable"
    spec = (spec or "auto").strip().lower()
    torch = require_torch()
    cuda_ok = torch.cuda.is_available()
    build = f"torch {torch.__version__}"
    if spec == "cpu":
        return DeviceChoice("cpu", f"CPU requested by the {source}")
    if spec == "auto":
        if cuda_ok:
            name = torch.cuda.get_device_name(0)
            return DeviceChoice("cuda", f"auto: CUDA GPU found ({name})")
        why = ("torch was built without CUDA" if torch.version.cuda is None
               else "no CUDA GPU is visible")
        return DeviceChoice("cpu", f"auto: {why} ({build}), using the CPU")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not cuda_ok:
            why = ("this torch was built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible to torch")
            raise ToptConfigError(
                f"DEVICE={spec} was requested but {why} ({build}); "
                "choose DEVICE=cpu, or DEVICE=auto to fall back to the CPU automatically.")
        if ":" in spec:
            try:
                idx = int(spec.split(":", 1)[1])
            except ValueError:
                raise ToptConfigError(f"DEVICE={spec} is not a valid device; expected cuda:N with N a number.")
            n = torch.cuda.device_count()
            if not 0 <= idx < n:
                raise ToptConfigError(
                    f"DEVICE={spec} asks for GPU {idx} but only {n} GPU(s) are visible; use cuda:0..cuda:{n - 1}.")
        return DeviceChoice(spec, f"CUDA requested by the {source} ({torch.cuda.get_device_name(0)})")
    raise ToptConfigError(f"DEVICE={spec!r} (from the {source}) is not known; expected one of "
                          f"{', '.join(DEVICE_CHOICES)} or cuda:N. Choose one of those"
                          + (" or unset TOPT_DEVICE." if source.startswith("TOPT") else "."))


class ThreadCount(int):
    """A CPU-thread count (an ``int``) with the reason it was chosen, for the log (like ``DeviceChoice``)."""

    reason: str

    def __new__(cls, n: int, reason: str):
        obj = super().__new__(cls, max(1, int(n)))
        obj.reason = reason
        return obj

    def __str__(self) -> str:
        return f"{int(self)} thread{'s' if int(self) != 1 else ''} ({self.reason})"

    __repr__ = __str__


#: how long the CPU load is sampled before a load-aware choice (seconds)
LOAD_SAMPLE_S = 0.25


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _proc_stat() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat (OSError where there is none)."""
    with open("/proc/stat", encoding="ascii") as fh:
        vals = [float(x) for x in fh.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)          # idle + iowait
    total = sum(vals[:8])                                         # guest time is already in user/nice
    return total - idle, total


def other_load(interval: float = LOAD_SAMPLE_S) -> tuple[float, str]:
    """(cores kept busy by *other* processes, how it was measured).

    Samples /proc/stat over ``interval`` seconds and takes this process's own CPU time over the same
    interval off, so work this process did a moment ago (reading layers, a previous stage) does not
    count as load, as it would in the 1-minute load average. Where /proc/stat is missing (macOS) the
    1-minute load average is used; where that is missing too (Windows), the machine counts as idle."""
    import time

    try:
        b0, t0 = _proc_stat()
        own0, w0 = sum(os.times()[:2]), time.monotonic()
        time.sleep(interval)
        b1, t1 = _proc_stat()
        own1, w1 = sum(os.times()[:2]), time.monotonic()
        cores = os.cpu_count() or 1
        busy = (b1 - b0) / max(t1 - t0, 1e-9) * cores            # busy cores, all processes
        own = (own1 - own0) / max(w1 - w0, 1e-9)
        return max(0.0, busy - own), f"measured over {interval:.2f} s"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return max(0.0, os.getloadavg()[0]), "1-minute load average"
    except (OSError, AttributeError):
        return 0.0, "no load figure on this system"


def cpu_threads(requested: int = 0, small: bool = False, load_aware: bool = False) -> ThreadCount:
    """The one CPU-thread policy of the engine (torch's intra-op threads), as a count with its reason.

    ``requested`` > 0 wins. Otherwise one thread for ``small`` work, where the ops are tiny and
    extra threads only add synchronisation (2-10x slower measured on a busy 2-core VM). Otherwise:

    * ``load_aware`` (inference, stage 2): the cores that are free now, i.e. the usable cores minus
      those other processes keep busy (``other_load``: /proc/stat sampled for a quarter second,
      this process's own time taken off), at least 1. On an idle 2-core machine that is 2; with
      another job on one core, 1: two threads fighting other jobs run 2-3x slower than one.
    * not ``load_aware`` (training, which must be reproducible on a machine): every usable core, a
      count that never depends on the load, so that its summation order, and so the model a seed
      gives, is the same whatever else runs. (Keeping one core back for QGIS was the old rule; the
      OS scheduler already shares the cores, and it left half of a 2-core machine idle.)

    Returns a ``ThreadCount`` (an int with ``.reason``) so the caller can say in the log what it chose.
    """
    if requested:
        return ThreadCount(requested, f"THREADS={int(requested)} requested")
    if small:
        return ThreadCount(1, "small work: one thread is fastest, more only add synchronisation")
    n = usable_cores()
    if not load_aware:
        return ThreadCount(n, f"all {n} usable core{'s' if n != 1 else ''}; a fixed count, not load-aware, so a "
                              "seed gives the same model whatever else runs")
    busy, how = other_load()
    free = max(1, min(n, int(n - busy + 0.5)))
    if free == n:
        why = (f"all {n} usable core{'s' if n != 1 else ''}: other processes keep {busy:.1f} core(s) busy "
               f"({how})")
    else:
        why = (f"{free} of {n} usable cores: other processes keep {busy:.1f} core(s) busy ({how}), and threads "
               "fighting them run slower than fewer threads")
    return ThreadCount(free, why)


_LAST_THREADS = None


def last_threads():
    """The thread count (a ``ThreadCount`` with its reason, where ``cpu_threads`` chose it) that the last
    ``torch_threads`` block ran with, for a front door's log after a stage; None before any."""
    return _LAST_THREADS


class torch_threads:
    """Context manager: torch uses ``n`` CPU threads inside (None: unchanged), the caller's count after."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        global _LAST_THREADS
        torch = require_torch()
        self.before = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(int(self.n))
            _LAST_THREADS = self.n
        return self

    def __exit__(self, *exc):
        require_torch().set_num_threads(self.before)
        return False
