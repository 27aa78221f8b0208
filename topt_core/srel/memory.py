"""Memory before allocation: estimate a training step's peak and refuse, with advice, what will not fit.

Each attention mode estimates its own peak (``srel/modes/``: ``estimate_memory``, ``check_memory``);
this module holds what they share (the device's free memory) and the old entry points.
"""
from __future__ import annotations

from ..config import SrelConfig
from .modes.dense import estimate_dense_memory  # noqa: F401  (re-exported)
from .modes.sparse import estimate_sparse_memory  # noqa: F401  (re-exported)


def available_memory(device: str = "cpu") -> int | None:
    """Bytes available on the device: CUDA free memory, else psutil, else /proc/meminfo; None if unknown."""
    if device.startswith("cuda"):
        try:
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except Exception:
            return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(n: int, config: SrelConfig, device: str = "cpu", mode="dense") -> int:
    """Raise ToptResourceError if training over n regions in ``mode`` (a mode or its name) will not fit;
    return the estimate (``AttentionMode.check_memory``)."""
    from .modes import get

    return get(mode).check_memory(n, config, device)
