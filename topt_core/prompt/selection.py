"""Stage 2's selection rule and its inner splits (the nested cross-validation of ``train.py``).

* ``inner_split_positions``: inside each outer training fold (group ``k``; ``-1`` = the final model),
  a shuffled ``config.inner_splits``-fold partition (``inner_splits=1``: one hold-out of
  ``inner_val_fraction``), or spatial blocks under the spatial-blocks protocol; every route shares them.
* ``select_members``: one selection head (``head_train.Member``) per inner split and learning rate in
  ``config.lr * config.lr_multipliers``.
* ``choose``: (lr, epochs) per group by a paired one-standard-error rule against the Ridge start: the
  head only leaves the Ridge solution when the inner splits agree that it helps.
* ``inner_split_seed`` / ``head_seed``: every seed of the inner splits and of the heads, derived from
  ``config.seed`` and the group, written once.
"""
from __future__ import annotations

import numpy as np

from ..config import PromptConfig
from .head_train import Member


def inner_split_seed(seed: int, k: int) -> int:
    """Seed of group ``k``'s inner splits (``k = -1``: the final model's)."""
    return seed + 7919 * (k + 2)


def head_seed(seed: int, k: int, offset: int) -> int:
    """Seed of one head of group ``k``: ``offset`` tells the group's heads apart (a selection head's
    ``inner * 31 + lr index``; 7 for the refit head)."""
    return seed * 100003 + (k + 2) * 1009 + offset


def _inner_splits(n: int, n_splits: int, frac: float, seed: int):
    """Positions (train, val) inside an outer training fold of ``n`` rows.

    ``n_splits >= 2``: a shuffled ``n_splits``-fold partition (every row validated once; ``frac`` unused);
    ``n_splits == 1``: one random hold-out of ``frac`` of the rows."""
    perm = np.random.default_rng(seed).permutation(n)
    if n_splits == 1:
        n_val = int(min(max(1, round(frac * n)), n - 2))
        return [(np.sort(perm[n_val:]), np.sort(perm[:n_val]))]
    k = min(n_splits, n // 2)
    parts = np.array_split(perm, k)
    return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(parts[i])) for i in range(k)]


def select_members(groups, config: PromptConfig, splits=None):
    """Selection heads for each group (k, outer train rows, rows to predict): inner splits x learning rates.

    ``splits``: per group, the inner (train, val) positions (default: ``inner_split_positions`` without
    coordinates, i.e. shuffled K-fold)."""
    lrs = [config.lr * f for f in config.lr_multipliers]
    out = []
    splits = inner_split_positions(groups, config) if splits is None else splits
    for k, tr, _ in groups:
        for s, (itr, iva) in enumerate(splits[k]):
            for li, lr in enumerate(lrs):
                out.append(Member(k, "select", s, lr, config.epochs, rows=tr, train=itr, val=iva,
                                  seed=head_seed(config.seed, k, s * 31 + li)))
    return out


def choose(groups, select, curves, config: PromptConfig):
    """Per group: (lr, epochs) by a paired one-standard-error rule on the inner validation MSE.

    For every candidate, d_s(e) = mse_s(e) - mse_s(0) on inner split s (0 epochs = the Ridge start).
    The best candidate minimises mean_s d(e); the chosen one is the fewest epochs whose mean d is within
    one standard error (of the best candidate's d_s) of the best, so the head leaves the Ridge solution
    only when the inner splits agree that it helps.
    """
    chosen = {}
    for k, _, _ in groups:
        cands = []                                       # (mean d, epochs, lr, se, mean mse, mean mse at 0)
        for lr in [config.lr * f for f in config.lr_multipliers]:
            idx = [i for i, m in enumerate(select) if m.group == k and m.lr == lr]
            if not idx:
                continue
            L = min(len(curves[i][0]) for i in idx)     # the group's own early stop (shortest inner curve)
            ep = curves[idx[0]][0][:L]
            mse = np.array([curves[i][1][:L] for i in idx])          # (splits, L)
            d = mse - mse[:, :1]
            se = d.std(0, ddof=1) / np.sqrt(len(idx)) if len(idx) > 1 else np.zeros(L)
            for j in range(L):
                cands.append((float(d[:, j].mean()), int(ep[j]), lr, float(se[j]), float(mse[:, j].mean()),
                              float(mse[:, 0].mean())))
        cands = [c for c in cands if np.isfinite(c[0])]  # an empty inner validation split scores NaN
        if not cands:                                    # no usable validation curve: stay at the Ridge start
            chosen[k] = {"fold": k, "lr": config.lr, "epochs": 0, "val_rmse": float("nan"),
                         "val_rmse_ridge": float("nan"), "best_epochs": 0}
            continue
        best = min(cands, key=lambda c: (c[0], c[1]))
        limit = best[0] + (best[3] if np.isfinite(best[3]) else 0.0)
        pick = min((c for c in cands if c[0] <= limit + 1e-12), key=lambda c: (c[1], c[0]))
        chosen[k] = {"fold": k, "lr": pick[2], "epochs": pick[1], "val_rmse": float(np.sqrt(pick[4])),
                     "val_rmse_ridge": float(np.sqrt(pick[5])), "best_epochs": best[1]}
    return chosen


def inner_split_positions(groups, config: PromptConfig, coords=None) -> dict:
    """Per group: the inner (train, val) positions into its training rows, shared by every route.

    Shuffled K-fold (``config.inner_splits``); under the spatial-blocks protocol, spatial blocks of the
    training rows, as many as make them the size of the outer blocks, so the choices are made the way
    the outer figure is measured."""
    from ..evaluate import protocol, spatial_block_folds

    out = {}
    for k, tr, _ in groups:
        seed = inner_split_seed(config.seed, k)
        if protocol(config.protocol).spatial and coords is not None and config.inner_splits >= 2:
            # inner blocks as large as the outer ones (outer folds - 1 over a training area that lacks one
            # block): with fewer, larger inner blocks every choice is made for a harder extrapolation than
            # the one scored (on Chicago tracts the inner splits then chose 30x the penalty: -0.19 R²)
            blocks = max(config.inner_splits, config.outer_folds - 1)
            out[k] = spatial_block_folds(np.asarray(coords)[tr], min(blocks, len(tr) // 2), seed)
        else:
            out[k] = _inner_splits(len(tr), config.inner_splits, config.inner_val_fraction, seed)
    return out
