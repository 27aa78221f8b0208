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


def cpu_threads(requested: int = 0, small: bool = False, load_aware: bool = False) -> int:
    """The one CPU-thread policy of the engine (torch's intra-op threads).

    ``requested`` > 0 wins. Otherwise one thread for ``small`` work, where the ops are tiny and
    extra threads only add synchronisation (2-10x slower measured on a busy 2-core VM); else all
    but one core (all on <= 2 cores), leaving QGIS a core when there are several. ``load_aware``
    also counts cores that other processes keep busy (1-minute load average): two threads
    fighting other jobs run 2-3x slower than one. Training that must be reproducible on a
    machine leaves it off, so its thread count (and so its summation order) never depends on load.
    """
    if requested:
        return int(requested)
    if small:
        return 1
    n = os.cpu_count() or 1
    want = max(1, n - 1 if n > 2 else n)
    if load_aware:
        try:
            want = max(1, min(want, int(n - os.getloadavg()[0] + 0.5)))
        except (OSError, AttributeError):
            pass
    return want


class torch_threads:
    """Context manager: torch uses ``n`` CPU threads inside (None: unchanged), the caller's count after."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        torch = require_torch()
        self.before = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        require_torch().set_num_threads(self.before)
        return False
