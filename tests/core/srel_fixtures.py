"""Tiny synthetic RegionData for the stage-1 tests (imported by test_srel*/test_checkpoint)."""
import numpy as np
import scipy.sparse as sp

from topt_core.config import SrelConfig
from topt_core.data import RegionData

FAST = SrelConfig(epochs=6, hidden_dim=16, embed_dim=8, heads=2, layers=1, device="cpu", threads=1,
                  restarts=1)  # the single-model path; restart ensembles: test_srel_restarts.py


def tiny_data(n=24, views=("poi", "landuse", "mobility", "extra"), seed=0, targets=True, adjacency=True):
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n]
    centroids = grid * 500.0 + rng.normal(0, 30, (n, 2))
    adj = None
    if adjacency:
        e = [(i, j) for i in range(n) for j in range(n)
             if i < j and np.abs(grid[i] - grid[j]).sum() == 1]
        adj = np.array(e).T
    mob = rng.poisson(3.0, (n, n)).astype(float)
    mob[n - 1, n - 1] = 1e6  # an artefact like the NYC self-loop
    return RegionData(
        region_ids=np.array([f"r{i}" for i in range(n)]), centroids=centroids, areas=np.full(n, 2.5e5),
        crs="EPSG:32618",
        poi_counts=rng.poisson(4.0, (n, 5)).astype(float) if "poi" in views else None,
        poi_categories=[f"cat{i}" for i in range(5)],
        landuse=rng.poisson(2.0, (n, 3)).astype(float) if "landuse" in views else None,
        landuse_classes=["res", "com", "park"],
        mobility=sp.csr_matrix(mob) if "mobility" in views else None,
        extra=rng.normal(size=(n, 2)) * [1.0, 1000.0] if "extra" in views else None,
        extra_names=["income", "pop"],
        adjacency=adj,
        targets={"crime": rng.random(n) * 100} if targets else {},
    )


class CountingReporter:
    """Records messages; cancels after ``cancel_after`` is_canceled() calls (None = never)."""

    def __init__(self, cancel_after=None):
        self.cancel_after, self.calls = cancel_after, 0
        self.infos, self.progress, self.texts, self.warnings = [], [], [], []

    def set_progress(self, p):
        self.progress.append(p)

    def set_text(self, t):
        self.texts.append(t)

    def info(self, t):
        self.infos.append(t)

    def warning(self, t):
        self.warnings.append(t)

    def is_canceled(self):
        self.calls += 1
        return self.cancel_after is not None and self.calls > self.cancel_after
