"""Stage 2 training: the nested cross-validation that drives the stacked routes (``stack.py``) and the
Prompt4RE cross-attention head, one of those routes.

Protocol
--------
* Outer folds: ``topt_core.evaluate.make_folds(n_labelled, config.protocol, config.folds)``
  over the labelled regions (``random``, the default: shuffled KFold(10); ``hafusion-ny``, the
  benchmark: KFold(10) in layer order; ``spatial-blocks``: contiguous areas). Protocols of the
  Chicago/SF benchmarks leave regions with 0 check-ins out of the check-in task, as published.
* Target scale (``auto``): every route runs on the original scale and, for targets >= 0, on
  log1p; the stacking weights (inner splits) decide how much each counts.
* Inside each outer training fold, the inner train/validation splits (``selection.py``: a shuffled
  ``config.inner_splits``-fold partition, ``inner_splits=1``: one hold-out of ``inner_val_fraction``;
  spatial blocks under the spatial-blocks protocol). Heads (``head_train.py``) are trained on the
  inner training part for every learning rate in ``config.lr * config.lr_multipliers``; the
  validation MSE (original units, negatives clipped when the target is non-negative) is recorded
  every ``config.eval_every`` epochs, epoch 0 (= the Ridge solution) included. A head stops early
  when its own validation MSE has not improved for ``config.patience`` epochs. (lr, epochs) is
  chosen by a paired one-standard-error rule against the Ridge start (``selection.choose``): the
  head only leaves the Ridge solution when the inner splits agree that it helps.
* Then one head is refit on the whole outer training fold with the chosen lr for the chosen
  number of epochs and predicts the outer test fold.
* Selection heads never receive the outer test rows at all (their inputs are gathered from
  the outer training fold only), and every statistic (embedding and text standardisation,
  text PCA, target scaling, the Ridge initialisation) is computed from the head's own
  training rows. ``record`` receives every head's rows so tests can check this.
* Final model: the same selection on all labelled regions, then a refit on all of them that
  predicts every region, labelled or not.

Targets: standardised with training-row mean/std, on the original scale or after ``log1p``
(``auto`` keeps log1p only where the inner splits show it lowers the error in original units:
exponentiating extrapolated log predictions can hurt, as on Manhattan). The head's loss, optimiser
and determinism: ``head_train.py``; every seed derives from ``config.seed`` (``selection.head_seed``,
``selection.inner_split_seed``), so the same inputs give identical outputs on the CPU.

Layout: this module orchestrates (``fit_predict``: folds, routes, the stack); ``selection.py`` holds
the selection rule and the inner splits; ``head_train.py`` trains the heads.
"""
from __future__ import annotations

import numpy as np

from ..config import PromptConfig
from ..errors import ToptConfigError, ToptDataError
from ..progress import check_canceled, ensure_reporter
from .head_train import Member, train_members
from .selection import choose, head_seed, inner_split_positions, select_members


def _transform(kind):
    """(forward, inverse) of a target transform; log1p predictions are clipped before expm1."""
    if kind == "none":
        return (lambda y: y), (lambda y: y)
    if kind == "log1p":
        return np.log1p, (lambda y: np.expm1(np.clip(y, -50, 50)))
    raise ToptConfigError(f"PromptConfig.target_transform must be none or log1p, got {kind!r}.")


SKEW_RATIO = 20.0     # "extreme tail": the largest label above this multiple of the 90th percentile (a warning)


def use_head(config: PromptConfig, n_labelled: int) -> bool:
    """Whether the cross-attention head route runs: on, off, or auto (up to HEAD_AUTO_MAX labels)."""
    return config.use_head == "on" or (config.use_head == "auto" and n_labelled <= HEAD_AUTO_MAX)


HEAD_AUTO_MAX = 2000    # above this many labelled regions the head's nested training takes many minutes


def fit_predict(emb: np.ndarray, text: np.ndarray, y: np.ndarray, config: PromptConfig = PromptConfig(),
                reporter=None, record: list | None = None, device: str = "cpu", coords=None, views=None,
                text_route=None) -> dict:
    """Nested-CV out-of-fold predictions + a final model for every region (``stack.py``).

    ``emb`` (N, D) region embeddings, ``text`` (N, F, Dt) raw LM vectors per region, ``y`` (N,) with
    NaN = unknown, ``coords`` (N, 2) metric centroids (neighbours, spatial blocks), ``views`` (N, V)
    standardised view values or None, ``text_route`` (N, Dt) the vectors the text route reads (default:
    the mean of ``text`` over facets). Returns a dict with ``oof``, ``predictions``, ``labelled``,
    ``ridge_oof``, ``folds`` (global row indices), ``chosen`` (per group: weights, head epochs),
    ``fold_predictions`` (outer fold -> its model's prediction for every region), ``clip``,
    ``transforms``, ``left_out`` (labelled regions the protocol leaves out, e.g. zero check-ins) and
    ``evidence`` (the final model's labelled neighbours of every region and their weights).
    ``record`` (a list) gets one dict per trained head: group, phase, inner, lr, rows, train rows, val rows.
    """
    from ..evaluate import make_folds, protocol
    from . import stack

    reporter = ensure_reporter(reporter)
    emb = np.asarray(emb, dtype=np.float64)
    text = np.asarray(text, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1).copy()
    n = emb.shape[0]
    left_out = np.zeros(n, dtype=bool)
    if protocol(config.protocol).drop_zero_checkins and config.task == "checkin":
        left_out = np.isfinite(y) & (y == 0)
        y[left_out] = np.nan                        # as the published protocol: not scored, not trained on
    lab = np.where(np.isfinite(y))[0]
    clip = bool(np.all(y[lab] >= 0))
    if config.target_transform == "log1p" and not clip:
        raise ToptDataError("target_transform=log1p needs a target >= 0 but some known values are negative; "
                            "use target_transform=none.")
    if coords is None:                   # no locations: nothing to interpolate between
        config = config.replace(use_interpolation=False)
    coords = np.zeros((n, 2)) if coords is None else np.asarray(coords, dtype=float)
    folds = [(lab[a], lab[b]) for a, b in make_folds(len(lab), config.protocol, config.folds, config.seed,
                                                     coords[lab])]
    groups = [(k, tr, te) for k, (tr, te) in enumerate(folds)] + [(-1, lab, np.arange(n))]
    transforms = (("none", "log1p") if config.target_transform == "auto" and clip else
                  ("log1p",) if config.target_transform == "log1p" else ("none",))
    splits = inner_split_positions(groups, config, coords)
    scale = float(emb.std()) or 1.0
    features = {"embedding": emb} if config.use_embedding else {}
    if config.use_views and views is not None:
        features["views"] = np.concatenate([emb, np.asarray(views) * scale], 1)
    if config.use_text and text.shape[1] and text.shape[2]:
        vecs = text.mean(1) if text_route is None else np.asarray(text_route, dtype=np.float64)
        features["text"] = np.concatenate([emb, stack.text_features(vecs, config.text_route_rank) * scale], 1)
    cands = stack.Candidates(features, y, coords, config, transforms, config.alphas)
    head_inner, head_all, head_chosen = {}, {}, {}
    if use_head(config, len(lab)):
        for t in transforms:
            c, everywhere, inner = _fit_groups(groups, emb, text, y, t, clip, config, reporter, record, device,
                                               len(folds), splits)
            for k, _, _ in groups:
                head_inner.setdefault(k, {})[("prompt", t, False)] = inner[k]
                head_all.setdefault(k, {})[("prompt", t, False)] = everywhere[k]
                head_chosen.setdefault(k, {})[t] = c[k]
    elif config.use_head == "auto":
        reporter.info(f"Prompt4RE: {len(lab)} labelled regions > {HEAD_AUTO_MAX}: the cross-attention head route "
                      "is left out (it would take many minutes); the text route still reads the language model's "
                      "vectors. Set use_head=on to run it anyway.")
    reporter.set_text("Prompt4RE: choosing and combining the routes on inner splits")
    everywhere, chosen = {}, {}
    everyone = np.arange(n)
    for i, (k, tr, te) in enumerate(groups):
        check_canceled(reporter)
        alpha_for, weights, info = stack.choose_group(cands, tr, splits[k], head_inner.get(k), config.ridge_alpha)
        everywhere[k] = stack.combine(cands, tr, everyone, alpha_for, weights, head_all.get(k))
        chosen[k] = {**_summary(k, weights, alpha_for, head_chosen.get(k, {})), **info}
        reporter.set_progress(100.0 * (i + 1) / len(groups))
    oof = np.full(n, np.nan)
    for k, tr, te in groups[:-1]:
        oof[te] = everywhere[k][te]
    predictions = everywhere[-1]
    nb_idx, nb_w = stack.neighbour_weights(coords, lab, everyone, config.neighbours_k)
    share = chosen[-1]["neighbours"]
    ridge_oof = _ridge_oof(emb, y, folds, config.ridge_alpha, clip)
    knn_oof = interpolation_oof(coords, y, folds, config.neighbours_k)
    return {"oof": oof, "predictions": predictions, "labelled": np.isfinite(y), "ridge_oof": ridge_oof,
            "knn_oof": knn_oof,
            "folds": folds, "chosen": [chosen[k] for k, _, _ in groups], "clip": clip,
            "transforms": {k: chosen[k]["log1p"] for k, _, _ in groups}, "left_out": left_out,
            "fold_predictions": {k: everywhere[k] for k, _, _ in groups[:-1]},
            "evidence": {"rows": lab[nb_idx], "weights": nb_w * share}}


def _summary(k, weights, alpha_for, head):
    """What one group chose, for the log and the report."""
    def share(pred):
        return float(sum(w for key, w in weights.items() if pred(key)))
    out = {"fold": k, "weights": {"/".join(str(x) for x in key if x is not False): round(float(w), 4)
                                  for key, w in weights.items() if w > 1e-4},
           "log1p": share(lambda key: key[1] == "log1p"), "neighbours": share(lambda key: key[2] is True)}
    for route in ("embedding", "views", "text", "interpolation", "prompt"):
        out[route] = share(lambda key, r=route: key[0] == r)
    if head:
        c = head.get("none") or next(iter(head.values()))
        out.update({"epochs": c["epochs"], "lr": c["lr"], "val_rmse": c["val_rmse"],
                    "val_rmse_ridge": c["val_rmse_ridge"]})
    return out


def _fit_groups(groups, emb, text, y, transform, clip, config, reporter, record, device, n_folds, splits=None):
    """Selection on inner splits, then refit, for the groups that use one target transform."""
    n = emb.shape[0]
    lab = np.isfinite(y)
    fwd, inv = _transform(transform)
    ytr = np.full(n, np.nan)
    ytr[lab] = fwd(y[lab])

    # 1. selection on inner splits of each outer training fold (the outer test rows are not even inputs)
    select = select_members(groups, config, splits)
    if record is not None:
        for m in select:
            record.append({"group": m.group, "phase": m.phase, "inner": m.inner, "lr": m.lr,
                           "rows": m.rows.copy(), "train": m.rows[m.train].copy(), "val": m.rows[m.val].copy()})
    reporter.set_text(f"Prompt4RE: model selection, {len(select)} heads on inner splits "
                      f"({n_folds} outer folds + final)")
    curves, _ = train_members(select, emb, text, ytr, y, inv, clip, config, reporter, (0.0, 70.0),
                              chunk_seed=1, device=device)
    chosen = choose(groups, select, curves, config)
    inner = {}
    for k, tr, _ in groups:                  # the head's inner out-of-fold predictions at its chosen stop
        oof = np.zeros(len(tr))
        for i, m in enumerate(select):
            if m.group == k and m.lr == chosen[k]["lr"]:
                ep, _, vals = curves[i]
                j = int(np.searchsorted(ep, min(chosen[k]["epochs"], ep[-1])))
                oof[m.val] = vals[min(j, len(vals) - 1)]
        inner[k] = oof
    for k, _, _ in groups:
        c = chosen[k]
        where = f"fold {k + 1}/{n_folds}" if k >= 0 else "final head"
        reporter.info(f"Prompt4RE {where}: inner validation chose {c['epochs']} epochs at lr {c['lr']:.2g} "
                      f"(validation RMSE {c['val_rmse']:.4g}; Ridge start {c['val_rmse_ridge']:.4g}"
                      f"{'; target log1p' if transform == 'log1p' else ''}).")

    # 2. refit each outer fold on its whole training fold and predict its test fold; final head on all
    refit = []
    for k, tr, te in groups:             # every head predicts every region (the intervals need them all)
        rest = np.setdiff1d(np.arange(n), tr)
        rows, train_pos = np.concatenate([tr, rest]), np.arange(len(tr))
        refit.append(Member(k, "refit", -1, chosen[k]["lr"], chosen[k]["epochs"], rows=rows, train=train_pos,
                            seed=head_seed(config.seed, k, 7)))
    if record is not None:
        for m in refit:
            record.append({"group": m.group, "phase": m.phase, "inner": -1, "lr": m.lr, "epochs": m.epochs,
                           "rows": m.rows.copy(), "train": m.rows[m.train].copy(), "val": np.zeros(0, int)})
    reporter.set_text("Prompt4RE: refitting the chosen heads")
    _, preds = train_members(refit, emb, text, ytr, y, inv, clip, config, reporter, (70.0, 100.0),
                             chunk_seed=2, device=device)
    everywhere = {}
    for i, m in enumerate(refit):
        full = np.zeros(n)
        full[m.rows] = preds[i]
        everywhere[m.group] = full
    return chosen, everywhere, inner


def interpolation_oof(coords, y, folds, k):
    """Out-of-fold inverse-distance interpolation of the training labels (the GIS user's first try), on the
    same outer folds: the second baseline the log and the report show."""
    from .stack import neighbour_weights

    oof = np.full(len(y), np.nan)
    for tr, te in folds:
        idx, w = neighbour_weights(coords, tr, te, k)
        oof[te] = (y[tr][idx] * w).sum(1)
    return oof


def _ridge_oof(emb, y, folds, alpha, clip):
    from sklearn.linear_model import Ridge

    oof = np.full(len(y), np.nan)
    for tr, te in folds:
        oof[te] = Ridge(alpha=alpha).fit(emb[tr], y[tr]).predict(emb[te])
    if clip:
        oof = np.where(np.isfinite(oof), np.clip(oof, 0, None), np.nan)
    return oof
