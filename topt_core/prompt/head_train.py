"""Training Prompt4RE cross-attention heads (``head.py``), many at once, for stage 2's nested
cross-validation (``train.py``).

A ``Member`` is one head to train: the rows it sees, its training (and, for a selection head, its
validation) positions in them, its learning rate, epochs and seed. ``train_members`` trains a list of
them in batched chunks (``EnsembleHead``, bounded by ``MAX_CHUNK_ELEMS``) and returns the validation
curves of the selection heads and the predictions of the refit heads.

* Inputs: every statistic (embedding and text standardisation, text PCA, target scaling, the Ridge
  initialisation) is computed from the head's own training rows (``_prep_member``).
* Loss: full-batch MSE + the Ridge penalty on the linear part (so the Ridge start is a stationary
  point of it); optimiser: Adam (``BatchedAdam``). The validation MSE (original units, negatives
  clipped when the target is non-negative) is recorded every ``config.eval_every`` epochs, epoch 0
  (= the Ridge solution) included; a selection head stops early when its own validation MSE has not
  improved for ``config.patience`` epochs.
* Determinism: all randomness comes from per-head generators seeded from ``Member.seed`` (initial
  weights and dropout masks), so the same inputs give identical outputs on the CPU; a head's random
  draws do not depend on which other heads share its batch (results then agree up to floating-point
  summation order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import PromptConfig
from ..progress import check_canceled

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
