"""Robust, bounded scaling shared by every view's node features.

User data has heavy tails and artefacts (a 1.5 M-trip self-loop in one OD row,
a region with 800 POIs next to regions with 3). Every view goes through the
same generic steps, fitted on the training data and stored with the model:
log1p, centring/scaling by robust statistics (median, IQR), clipping to
+-CLIP. numpy only; the torch model receives the finished float32 arrays.
"""
from __future__ import annotations

import numpy as np

CLIP = 5.0
# linear-scale count columns keep more of the tail (counts, not logs, are what count targets are linear in)
CLIP_LINEAR = 20.0


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def robust_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column centre (median) and scale (IQR/1.349, else std, else 1)."""
    x = np.asarray(x, dtype=np.float64)
    center = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    std = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, std)
    scale = np.where(scale > 1e-9, scale, 1.0)
    return center.astype(np.float32), scale.astype(np.float32)


def robust_apply(x: np.ndarray, center: np.ndarray, scale: np.ndarray, clip=CLIP) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float64) - center) / scale
    return np.clip(z, -np.asarray(clip), np.asarray(clip)).astype(np.float32)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (rows of zeros stay zero): cosine similarity is then a dot product."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Row-cosine similarity (rows of zeros get similarity 0), (N, N) float32."""
    u = unit_rows(x)
    return (u @ u.T).astype(np.float32)
