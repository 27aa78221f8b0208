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


def estimate_sparse_memory(n_regions: int, config: SrelConfig, od_pairs: int | None = None) -> int:
    """Rough peak bytes of one sparse training step: O(N (k + M)), nothing N².

    Per layer the gathered queries, keys and values of the local edges and their grads, the anchor
    logits (N x M x heads, a few copies); the OD loss's observed pairs (default 20 per region) and the
    sampled pairs of the similarity losses; node states.
    """
    from .graph import default_anchors

    n, c = int(n_regions), config
    e = n * (2 * (c.local_neighbours + c.od_partners) + 1)      # both directions, deduplicated at most this
    m = c.anchors or default_anchors(n)
    h, d = c.heads, c.hidden_dim
    attn = c.layers * (4 * e * (4 * d + 6 * h) + 4 * n * m * h * 6)
    pairs = 4 * (e * 4 + n * m * 3) + 8 * n * m                  # edge/anchor features, the N x M distances
    od = 4 * (od_pairs if od_pairs is not None else 20 * n) * (4 * c.embed_dim + 8) + 4 * n * min(n, c.od_negatives) * 8
    sim = 4 * n * min(n, c.similarity_sample) * 6 + 4 * n * c.embed_dim * 6
    nodes = 4 * n * (d * (8 + 6 * c.layers) + c.embed_dim * 16)
    params = 4 * 3 * (d * d * (4 + 12 * c.layers) + c.embed_dim * c.embed_dim * 6)
    kept = (c.restarts - 1) * (params // 3 + 4 * n * c.embed_dim * 2)
    return int(attn + pairs + od + sim + nodes + params + kept + 300 * 2 ** 20)


def describe_mode(n: int, config: SrelConfig, mode: str) -> str:
    """The attention mode in words, with why (for the log)."""
    from .graph import default_anchors

    why = (f"auto: {n} regions > {config.auto_sparse_above}" if config.attention == "auto" and mode == "sparse" else
           f"auto: {n} regions <= {config.auto_sparse_above}" if config.attention == "auto" else "as set")
    if mode == "dense":
        return f"dense attention over all region pairs ({why})"
    return (f"sparse attention ({why}): {config.local_neighbours} nearest regions + {config.od_partners} OD partners "
            f"one by one, {config.anchors or default_anchors(n)} anchor clusters for the rest of the city")


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


def check_memory(n: int, config: SrelConfig, device: str = "cpu", mode: str = "dense") -> int:
    """Raise ToptResourceError if training over n regions will not fit; return the estimate."""
    if mode == "sparse":
        need = estimate_sparse_memory(n, config)
        avail = available_memory(device)
        if avail is not None and need > avail:
            raise ToptResourceError(
                f"Training on {n} regions needs about {need / 1e9:.1f} GB (sparse attention) but only "
                f"{avail / 1e9:.1f} GB is available on {device}; use fewer regions (a smaller study area or a "
                "coarser grid), fewer local neighbours or anchors, or a machine with more memory.")
        return need
    need = estimate_dense_memory(n, config)
    advice = ("use ATTENTION=sparse (or auto), which limits attention to neighbours plus anchor clusters, or fewer "
              "regions (a smaller study area or a coarser grid)")
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
