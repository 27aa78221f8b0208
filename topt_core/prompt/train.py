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
* Inside each outer training fold, a shuffled ``config.inner_splits``-fold partition gives the
  inner train/validation splits (``inner_splits=1``: one hold-out of ``inner_val_fraction``). Heads are trained on the inner training part for every
  learning rate in ``config.lr * config.lr_multipliers``; the validation MSE (original units,
  negatives clipped when the target is non-negative) is recorded every ``config.eval_every``
  epochs, epoch 0 (= the Ridge solution) included. A head stops early when its own
  validation MSE has not improved for ``config.patience`` epochs. (lr, epochs) is chosen by a
  paired one-standard-error rule against the Ridge start (``choose``): the head only leaves the
  Ridge solution when the inner splits agree that it helps.
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
exponentiating extrapolated log predictions can hurt, as on Manhattan). Loss: full-batch MSE + the Ridge penalty on the linear part (so the
Ridge start is a stationary point of it); optimiser: Adam (``BatchedAdam``).
Determinism: all randomness comes from per-head generators seeded from ``config.seed`` (initial
weights and dropout masks), so the same inputs give identical outputs on the CPU; a head's random draws do not depend on which other
heads share its batch (results then agree up to floating-point summation order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import PromptConfig
from ..errors import ToptConfigError, ToptDataError
from ..progress import check_canceled, ensure_reporter

MAX_CHUNK_ELEMS = 40_000_000   # floats per training chunk (heads x rows x keys x width), bounds memory


@dataclass
class Member:
    """One head to train. ``rows``: global row indices it sees; ``train``/``val``: positions in ``rows``."""

    group: int               # outer fold index, or -1 for the final model
    phase: str               # "select" or "refit"
    inner: int               # inner split index (select) or -1
    lr: float
    epochs: int              # select: the maximum; refit: the chosen number
    rows: np.ndarray
    train: np.ndarray
    val: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seed: int = 0


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


def _prep_member(m: Member, emb, text, ytr, alpha, rank):
    """Inputs of one head from its own training rows only: standardised x, PCA'd texts, scaled targets, Ridge init."""
    from sklearn.linear_model import Ridge

    rows, tr = m.rows, m.train
    X = emb[rows]
    Xtr = X[tr]
    mu = Xtr.mean(0)
    sd = Xtr.std(0)
    sd[sd < 1e-12] = 1.0
    xs = (X - mu) / sd
    T = text[rows]                                  # (R, F, Dt)
    R, Fn, Dt = T.shape
    Ttr = T[tr].reshape(-1, Dt)
    tmu = Ttr.mean(0)
    tsd = Ttr.std(0)
    tsd[tsd < 1e-6] = 1.0
    Z = (T.reshape(-1, Dt) - tmu) / tsd
    if rank and rank < Dt:
        Ztr = (Ttr - tmu) / tsd
        _, _, vt = np.linalg.svd(Ztr, full_matrices=False)
        k = min(rank, vt.shape[0])
        Z = Z @ vt[:k].T
        scale = float(np.sqrt(np.mean((Ztr @ vt[:k].T) ** 2))) or 1.0
        Z = Z / scale
    t = Z.reshape(R, Fn, -1)
    y = ytr[rows[tr]]
    ym, ys = float(y.mean()), float(y.std()) or 1.0
    ridge = Ridge(alpha=alpha).fit(Xtr, y)            # the published protocol, on raw embeddings
    w = ridge.coef_.reshape(-1)
    wx = w * sd / ys
    b = (float(ridge.intercept_) + float(mu @ w) - ym) / ys
    # Ridge penalty alpha*|w|^2 / n in the head's units (w = wx * ys / sd): with it the linear part's
    # gradient is exactly 0 at the Ridge solution, so training cannot drift towards least squares.
    pen = (alpha / len(tr)) / (sd ** 2)
    return (xs.astype(np.float32), t.astype(np.float32), ym, ys, wx.astype(np.float32), np.float32(b),
            pen.astype(np.float32))


def _needs_eval(ep, chunk, every):
    if ep % every == 0 and any(m.phase == "select" for _, m in chunk):
        return True
    return any(ep == m.epochs for _, m in chunk)


def train_members(members, emb, text, ytr, yraw, inverse, clip, config: PromptConfig, reporter=None,
                  progress=(0.0, 100.0), chunk_seed: int = 0, device: str = "cpu"):
    """Train heads. Returns (curves {i: (epochs, val mse)} for select heads, preds {i: (R,)} for refit heads)."""
    from ..device import torch_threads

    curves, preds = {}, {}
    if not members:
        return curves, preds
    with torch_threads(_head_threads(members, text, config) if device == "cpu" else None):
        _train_chunks(members, emb, text, ytr, yraw, inverse, clip, config, reporter, progress, chunk_seed,
                      device, curves, preds)
    return curves, preds


SMALL_WORK = 8_000_000   # below this many activation floats per step, one CPU thread is fastest


def _head_threads(members, text, config) -> int:
    """Threads for head training (``device.cpu_threads``): one for small problems, load-aware otherwise."""
    from ..device import cpu_threads

    work = len(members) * max(len(m.rows) for m in members) * text.shape[1] * config.heads * config.head_dim
    return cpu_threads(config.threads, small=work < SMALL_WORK, load_aware=True)


def _train_chunks(members, emb, text, ytr, yraw, inverse, clip, config, reporter, progress, chunk_seed, device,
                  curves, preds):
    import torch

    from .head import BatchedAdam, EnsembleHead

    Fn = text.shape[1]
    rank = min(config.text_rank or text.shape[2], text.shape[2])
    width = Fn * max(rank, config.heads * config.head_dim) * 4
    R_all = max(len(m.rows) for m in members)
    per = max(1, int(MAX_CHUNK_ELEMS // max(R_all * width, 1)))
    items = list(enumerate(members))
    chunks = [items[i:i + per] for i in range(0, len(items), per)]
    total = sum(max(m.epochs for _, m in c) + 1 for c in chunks)
    done = 0
    for ci, chunk in enumerate(chunks):
        E = len(chunk)
        R = max(len(m.rows) for _, m in chunk)
        prepped = [_prep_member(m, emb, text, ytr, config.ridge_alpha, config.text_rank) for _, m in chunk]
        r = prepped[0][1].shape[2]
        X = np.zeros((E, R, emb.shape[1]), np.float32)
        T = np.zeros((E, R, Fn, r), np.float32)
        Y = np.zeros((E, R), np.float32)
        W = np.zeros((E, R), np.float32)
        for j, ((_, m), (xs, t, ym, ys, *_)) in enumerate(zip(chunk, prepped)):
            n = len(m.rows)
            X[j, :n], T[j, :n] = xs, t
            Y[j, m.train] = (ytr[m.rows[m.train]] - ym) / ys
            W[j, m.train] = 1.0 / len(m.train)
        scale = np.array([[p[2], p[3]] for p in prepped], np.float64)       # (E, 2): target mean, std
        P = torch.from_numpy(np.stack([p[6] for p in prepped])).to(device)  # (E, D) ridge penalty weights
        head = EnsembleHead(E, emb.shape[1], r, config.heads, config.head_dim, config.task_tokens,
                            config.dropout, seeds=[m.seed for _, m in chunk],
                            final_w_x=np.stack([p[4] for p in prepped]),
                            final_b=np.array([p[5] for p in prepped])).to(device)
        opt = BatchedAdam(head.parameters(), torch.tensor([m.lr for _, m in chunk], device=device),
                          decayed=head.decayed(), weight_decay=config.weight_decay)
        Xt, Tt, Yt, Wt = (torch.from_numpy(a).to(device) for a in (X, T, Y, W))
        max_ep = max(m.epochs for _, m in chunk)
        evals = {j: ([], [], []) for j in range(E)}      # epochs, validation MSE, validation predictions
        best = {j: (np.inf, 0) for j, (_, m) in enumerate(chunk) if m.phase == "select"}
        stopped = {j: None for j in best}       # early stop per head, from its own validation curve only
        gen = [torch.Generator(device=device).manual_seed(m.seed * 7 + 3) for _, m in chunk]   # dropout, per head

        def evaluate(epoch):
            head.eval()
            with torch.no_grad():
                out = head(Xt, Tt).double().cpu().numpy()
            head.train()
            y = inverse(out * scale[:, 1:2] + scale[:, 0:1])
            if clip:
                y = np.clip(y, 0.0, None)
            for j, (idx, m) in enumerate(chunk):
                if m.phase == "select":
                    if stopped[j] is None and (epoch % config.eval_every == 0 or epoch == m.epochs):
                        mse = float(np.mean((y[j, m.val] - yraw[m.rows[m.val]]) ** 2))
                        evals[j][0].append(epoch)
                        evals[j][1].append(mse)
                        evals[j][2].append(y[j, m.val].copy())
                        if mse < best[j][0] - 1e-12:
                            best[j] = (mse, epoch)
                        if epoch - best[j][1] >= config.patience or epoch >= m.epochs:
                            stopped[j] = epoch
                elif epoch == m.epochs:
                    preds[idx] = y[j, :len(m.rows)].copy()

        head.train()
        evaluate(0)
        for ep in range(1, max_ep + 1):
            if stopped and all(v is not None for v in stopped.values()):
                break
            if ep % 5 == 0:
                check_canceled(reporter)
            opt.zero_grad()
            out = head(Xt, Tt, generator=gen)
            loss = (((out - Yt) ** 2) * Wt).sum() + (P * head.wx ** 2).sum()
            loss.backward()
            opt.step()
            if _needs_eval(ep, chunk, config.eval_every):
                evaluate(ep)
            if reporter is not None and ep % 10 == 0:
                reporter.set_progress(progress[0] + (progress[1] - progress[0]) * (done + ep) / total)
        done += max_ep + 1
        for j, (idx, m) in enumerate(chunk):
            if m.phase == "select":
                curves[idx] = (np.array(evals[j][0]), np.array(evals[j][1]), evals[j][2])


def _transform(kind):
    """(forward, inverse) of a target transform; log1p predictions are clipped before expm1."""
    if kind == "none":
        return (lambda y: y), (lambda y: y)
    if kind == "log1p":
        return np.log1p, (lambda y: np.expm1(np.clip(y, -50, 50)))
    raise ToptConfigError(f"PromptConfig.target_transform must be none or log1p, got {kind!r}.")


def select_members(groups, config: PromptConfig, splits=None):
    """Selection heads for each group (k, outer train rows, rows to predict): inner splits x learning rates."""
    lrs = [config.lr * f for f in config.lr_multipliers]
    out = []
    for k, tr, _ in groups:
        parts = splits[k] if splits is not None else _inner_splits(
            len(tr), config.inner_splits, config.inner_val_fraction, config.seed + 7919 * (k + 2))
        for s, (itr, iva) in enumerate(parts):
            for li, lr in enumerate(lrs):
                out.append(Member(k, "select", s, lr, config.epochs, rows=tr, train=itr, val=iva,
                                  seed=config.seed * 100003 + (k + 2) * 1009 + s * 31 + li))
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


SKEW_RATIO = 20.0     # "extreme tail": the largest label above this multiple of the 90th percentile (a warning)


def inner_split_positions(groups, config: PromptConfig, coords=None) -> dict:
    """Per group: the inner (train, val) positions into its training rows, shared by every route.

    Shuffled K-fold (``config.inner_splits``); under the spatial-blocks protocol, spatial blocks of the
    training rows, as many as make them the size of the outer blocks, so the choices are made the way
    the outer figure is measured."""
    from ..evaluate import protocol, spatial_block_folds

    out = {}
    for k, tr, _ in groups:
        seed = config.seed + 7919 * (k + 2)
        if protocol(config.protocol).spatial and coords is not None and config.inner_splits >= 2:
            # inner blocks as large as the outer ones (outer folds - 1 over a training area that lacks one
            # block): with fewer, larger inner blocks every choice is made for a harder extrapolation than
            # the one scored (on Chicago tracts the inner splits then chose 30x the penalty: -0.19 R²)
            blocks = max(config.inner_splits, config.outer_folds - 1)
            out[k] = spatial_block_folds(np.asarray(coords)[tr], min(blocks, len(tr) // 2), seed)
        else:
            out[k] = _inner_splits(len(tr), config.inner_splits, config.inner_val_fraction, seed)
    return out


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
                            seed=config.seed * 100003 + (k + 2) * 1009 + 7))
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
