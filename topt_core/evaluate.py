"""The published evaluation protocols, reproduced exactly.

Regression (MVURE/MGFN/HREP/GURPP/HAFusion): ``Ridge(alpha=1)`` k-fold,
out-of-fold predictions concatenated, negatives clipped to 0, then MAE, RMSE
and R² on the pooled vector. Clustering: ``KMeans(12, random_state=3,
n_init=10)`` scored by NMI/ARI against the community-district labels.
scikit-learn does the fitting; this module only fixes the protocol.
"""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from .errors import ToptConfigError, ToptDataError

@dataclass(frozen=True)
class Protocol:
    """How the labelled regions are split into outer folds."""

    folds: int
    shuffle: bool = False
    random_state: int | None = None      # None with shuffle: the run's seed
    spatial: bool = False                # folds are spatially contiguous blocks (KMeans on centroids)
    drop_zero_checkins: bool = False     # check-in task: regions with 0 check-ins are left out (HAFusion Chi/SF)
    about: str = ""

    def describe(self, n_splits: int | None = None, seed: int | None = None) -> str:
        k = n_splits or self.folds
        if self.spatial:
            return f"{k} folds of spatially contiguous blocks (KMeans on centroids, seed {seed})"
        if not self.shuffle:
            return f"KFold({k}) in layer order, not shuffled"
        rs = self.random_state if self.random_state is not None else seed
        return f"KFold({k}), shuffled (random_state {rs})"


# see shared/data/README.md §6 for the published ones
PROTOCOLS = {
    "random": Protocol(10, True, None, about="the default for your own data: shuffled folds"),
    "spatial-blocks": Protocol(10, spatial=True, about="each test fold is one contiguous area: how well the "
                               "model predicts where no region nearby is labelled"),
    "hafusion-ny": Protocol(10, False, None, about="HAFusion/ToPT Manhattan benchmark (layer order)"),
    "mvure-5fold": Protocol(5, False, None, about="MVURE/MGFN/HREP/GURPP benchmark (layer order)"),
    "hafusion-chi": Protocol(25, True, 2024, drop_zero_checkins=True, about="HAFusion Chicago benchmark"),
    "hafusion-sf": Protocol(10, True, 2024, drop_zero_checkins=True, about="HAFusion San Francisco benchmark"),
    "topt-chi": Protocol(10, True, 2024, drop_zero_checkins=True, about="ToPT Chicago benchmark"),
}
DEFAULT_USER_PROTOCOL = "random"


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ToptConfigError(f"Unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]


def make_folds(n: int, name: str = "hafusion-ny", n_splits: int | None = None, seed: int = 0, coords=None):
    """List of (train_idx, test_idx) for ``n`` samples under a named protocol.

    ``n_splits`` (0/None: the protocol's own number) overrides the number of folds; ``seed`` shuffles
    the protocols without a fixed random state; ``coords`` (n, 2) are needed by ``spatial-blocks``.
    """
    from sklearn.model_selection import KFold

    p = protocol(name)
    k = n_splits or p.folds
    if n < k:
        raise ToptDataError(f"Only {n} labelled regions for {k}-fold cross-validation; label at least {k} "
                            f"regions or use fewer folds.")
    if p.spatial:
        return spatial_block_folds(coords, k, seed)
    rs = (p.random_state if p.random_state is not None else int(seed)) if p.shuffle else None
    return list(KFold(n_splits=k, shuffle=p.shuffle, random_state=rs).split(np.arange(n)))


def spatial_block_folds(coords, k: int, seed: int = 0):
    """k folds, each a spatially contiguous block: KMeans(k) on the (metric) coordinates."""
    from sklearn.cluster import KMeans

    if coords is None:
        raise ToptDataError("The spatial-blocks protocol needs the regions' locations; give a polygon layer (or a "
                            "model folder with the stored regions), or choose PROTOCOL=random.")
    c = np.asarray(coords, dtype=float)
    block = KMeans(n_clusters=k, random_state=int(seed) % 2 ** 31, n_init=10).fit_predict(c)
    idx = np.arange(len(c))
    return [(idx[block != b], idx[block == b]) for b in range(k) if (block == b).any()]


def regression_metrics(y_true, y_pred) -> dict:
    """MAE, RMSE and R² (sklearn) on pooled predictions."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    return {"mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
            "r2": float(r2_score(y_true, y_pred))}


def ridge_kfold(emb, y, protocol: str = "hafusion-ny", alpha: float = 1.0, n_splits: int | None = None,
                seed: int = 0, coords=None):
    """The published Ridge protocol. Returns (metrics, out-of-fold predictions)."""
    from sklearn.linear_model import Ridge

    emb = np.asarray(emb, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1)
    if emb.ndim != 2 or emb.shape[0] != y.shape[0]:
        raise ToptDataError(f"{emb.shape[0] if emb.ndim else 0} embeddings but {y.shape[0]} targets; expected one "
                            "target per region. Use the layer the embeddings were written to.")
    if not np.isfinite(emb).all():
        raise ToptDataError("Some embedding values are empty, NaN or infinite; expected finite numbers. Re-run "
                            "training on these regions or remove those rows.")
    if not np.isfinite(y).all():
        raise ToptDataError(f"{int((~np.isfinite(y)).sum())} target value(s) are empty, NaN or infinite; expected "
                            "numbers. Leave those regions out (they are unknown) or fill them.")
    if y.size and np.ptp(y) == 0:
        raise ToptDataError(f"The target has the same value ({y[0]:g}) in every labelled region, so MAE/RMSE/R² "
                            "say nothing; expected varying values. Choose another target field.")
    oof = np.zeros_like(y)
    for tr, te in make_folds(len(y), protocol, n_splits, seed, coords):
        oof[te] = Ridge(alpha=alpha).fit(emb[tr], y[tr]).predict(emb[te])
    oof = np.clip(oof, 0.0, None)
    return regression_metrics(y, oof), oof


def cluster_kmeans(emb, k: int, random_state: int = 3, n_init: int = 10):
    """KMeans cluster of each region and the within-cluster sum of squares (cluster_regions, the protocol)."""
    from sklearn.cluster import KMeans

    emb = np.asarray(emb, dtype=float)
    if k > len(emb):
        raise ToptDataError(f"K={k} clusters but only {len(emb)} regions; choose K <= {len(emb)}.")
    km = KMeans(n_clusters=k, random_state=random_state, n_init=n_init)
    return km.fit_predict(emb), float(km.inertia_)


def kmeans_clustering_scores(emb, labels, n_clusters: int = 12, random_state: int = 3, n_init: int = 10) -> dict:
    """KMeans(12, random_state=3, n_init=10) NMI and ARI against reference labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred, _ = cluster_kmeans(emb, n_clusters, random_state, n_init)
    return {"nmi": float(normalized_mutual_info_score(labels, pred)),
            "ari": float(adjusted_rand_score(labels, pred))}
