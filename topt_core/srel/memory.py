"""Memory before allocation: estimate a training step's peak and refuse, with advice, what will not fit."""
from __future__ import annotations

from ..config import SrelConfig
from ..errors import ToptResourceError
from .attention import dense_attention_bytes


def estimate_dense_memory(n_regions: int, config: SrelConfig) -> int:
    """Rough peak bytes of one dense training step for N regions (dominated by N² terms)."""
    n = int(n_regions)
    c = config
    attn = dense_attention_bytes(n, c.heads, c.layers)
    pair = 4 * n * n * (c.heads * 3                      # pair bias, its grad, per-head copies
                        + (c.distance_kernels * 3 if c.spatial_bias == "gaussian" else 0)
                        + (4 if c.spatial_bias == "bucket" else 0)
                        + 12)                            # distances, flow, OD target, 2 softmax + grads, cosines
    rows = 4 * n * 2 * n * 3 if c.mobility_features == "rows" else 0
    nodes = 4 * n * (c.hidden_dim * (8 + 6 * c.layers) + c.embed_dim * 12)
    params = 4 * 3 * (c.hidden_dim * c.hidden_dim * (4 + 12 * c.layers) + c.embed_dim * c.embed_dim * 6)
    # restarts train one after another: only the finished members' weights and outputs add up
    kept = (c.restarts - 1) * (params // 3 + 4 * n * c.embed_dim * 2)
    return int(attn + pair + rows + nodes + params + kept + 200 * 2 ** 20)


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


def check_memory(n: int, config: SrelConfig, device: str = "cpu") -> int:
    """Raise ToptResourceError if dense attention over n regions will not fit; return the estimate."""
    need = estimate_dense_memory(n, config)
    advice = ("use fewer regions (a smaller study area or a coarser grid); a sparse neighbour-limited "
              "attention mode is planned for large layers")
    if n > config.max_dense_regions:
        raise ToptResourceError(
            f"{n} regions exceed the dense-attention limit of {config.max_dense_regions} "
            f"(about {need / 1e9:.1f} GB needed); {advice}.")
    avail = available_memory(device)
    if avail is not None and need > avail:
        raise ToptResourceError(
            f"Training on {n} regions needs about {need / 1e9:.1f} GB but only {avail / 1e9:.1f} GB is "
            f"available on {device}; {advice}.")
    return need
