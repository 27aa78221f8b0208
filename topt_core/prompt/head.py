"""The Prompt4RE head, made inductive: per-region cross-attention over the region's OWN texts.

Design (one region at a time; nothing mixes rows):

* Query: the region embedding ``x`` (frozen, standardised with training-fold statistics),
  projected to ``d = heads * head_dim``.
* Keys/values: ``F`` vectors that belong to the region itself, all produced by the frozen
  language model: the task template alone, the template + the full description, and each
  facet sentence of the description (POIs, land use, mobility, place, extra; see
  ``templates.py``). They are standardised with training-region statistics (LM states are
  anisotropic) and reduced by a training-fold PCA to ``text_rank`` dimensions before the
  learned key/value projections. ``task_tokens`` learned vectors (shared by all regions)
  are appended as extra keys/values: a "nothing relevant" sink that lets attention ignore
  the texts.
* ``z = LayerNorm(W_res x + W_o attn(q, K, V))`` (residual + LayerNorm, as in the
  official TRAlign).
* Output: ``y = w_z . z + w_x . x + b``. ``w_x`` and ``b`` start from a Ridge fit on the
  training fold (the published Ridge protocol, mapped into standardised units) and ``w_z``
  starts at 0, so at epoch 0 the head predicts exactly what Ridge predicts; training can
  only move away from it if the inner validation says so.

The official head lets every region attend over the text vectors of ALL regions in the
split (so a test region's prediction depends on the other test regions). Here a region's
prediction depends only on its own embedding, its own texts and the trained weights.

To make nested cross-validation affordable on a CPU, ``EnsembleHead`` trains ``E``
independent heads at once: every parameter has a leading member axis and the batched
Adam in ``BatchedAdam`` is element-wise, so member ``e`` is trained exactly as it would be
alone (its loss only reaches its own parameters).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(gen, shape, fan_in):
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound


def _keep(t, p, generators):
    """Inverted-dropout mask, one explicit generator per member: a member's masks do not depend on
    which other members share its batch (nor on anything else using the torch RNG)."""
    u = torch.stack([torch.rand(t.shape[1:], generator=g, device=t.device) for g in generators])
    return (u >= p).to(t.dtype) / (1.0 - p)


class EnsembleHead(torch.nn.Module):
    """E independent Prompt4RE heads. Inputs: x (E, R, Dr), t (E, R, F, r); output (E, R)."""

    def __init__(self, members: int, region_dim: int, text_dim: int, heads: int, head_dim: int,
                 task_tokens: int, dropout: float, seeds, final_w_x, final_b):
        super().__init__()
        E, Dr, r, H = members, region_dim, text_dim, heads
        d = heads * head_dim
        self.E, self.H, self.hd, self.d, self.dropout = E, H, head_dim, d, float(dropout)
        params = {k: [] for k in ("wq", "bq", "wk", "bk", "wv", "bv", "tk", "tv", "wo", "bo", "wr", "br")}
        for s in seeds:                      # per-member generator: chunking never changes a member
            g = torch.Generator().manual_seed(int(s))
            params["wq"].append(_uniform(g, (Dr, d), Dr))
            params["bq"].append(_uniform(g, (d,), Dr))
            params["wk"].append(_uniform(g, (r, d), r))
            params["bk"].append(_uniform(g, (d,), r))
            params["wv"].append(_uniform(g, (r, d), r))
            params["bv"].append(_uniform(g, (d,), r))
            params["tk"].append(torch.randn((task_tokens, d), generator=g) * 0.5)
            params["tv"].append(torch.randn((task_tokens, d), generator=g) * 0.5)
            params["wo"].append(_uniform(g, (d, d), d))
            params["bo"].append(_uniform(g, (d,), d))
            params["wr"].append(_uniform(g, (Dr, d), Dr))
            params["br"].append(_uniform(g, (d,), Dr))
        for k, v in params.items():
            setattr(self, k, torch.nn.Parameter(torch.stack(v)))
        self.ln_g = torch.nn.Parameter(torch.ones(E, d))
        self.ln_b = torch.nn.Parameter(torch.zeros(E, d))
        self.wz = torch.nn.Parameter(torch.zeros(E, d))                 # text part of the output: starts at 0
        self.wx = torch.nn.Parameter(torch.as_tensor(final_w_x, dtype=torch.float32).clone())   # Ridge
        self.b = torch.nn.Parameter(torch.as_tensor(final_b, dtype=torch.float32).clone())      # Ridge
        self.task_tokens = task_tokens

    def decayed(self):
        """Parameters under weight decay: everything but the Ridge-initialised output layer."""
        return [p for n, p in self.named_parameters() if n not in ("wx", "b", "wz")]

    def forward(self, x, t, return_attention: bool = False, generator=None):
        E, R, Fn, c = t.shape
        H, hd = self.H, self.hd
        q = (torch.bmm(x, self.wq) + self.bq[:, None]).view(E, R, 1, H, hd)
        k = (torch.bmm(t.reshape(E, R * Fn, c), self.wk) + self.bk[:, None]).view(E, R, Fn, H, hd)
        v = (torch.bmm(t.reshape(E, R * Fn, c), self.wv) + self.bv[:, None]).view(E, R, Fn, H, hd)
        s = (q * k).sum(-1) / math.sqrt(hd)                                   # (E, R, F, H)
        if self.task_tokens:                                                  # learned keys shared by all regions
            st = torch.einsum("erhc,ekhc->erkh", q.view(E, R, H, hd),
                              self.tk.view(E, -1, H, hd)) / math.sqrt(hd)     # (E, R, T, H)
            s = torch.cat([s, st], dim=2)
        a = torch.softmax(s, dim=2)
        if self.training and self.dropout > 0:
            a = a * _keep(a, self.dropout, generator)
        o = (a[:, :, :Fn, :, None] * v).sum(2)                                 # (E, R, H, hd)
        if self.task_tokens:
            o = o + torch.einsum("erkh,ekhc->erhc", a[:, :, Fn:], self.tv.view(E, -1, H, hd))
        o = torch.bmm(o.reshape(E, R, H * hd), self.wo) + self.bo[:, None]
        res = torch.bmm(x, self.wr) + self.br[:, None]
        z = F.layer_norm(res + o, (self.d,)) * self.ln_g[:, None] + self.ln_b[:, None]
        if self.training and self.dropout > 0:
            z = z * _keep(z, self.dropout, generator)
        y = (z * self.wz[:, None]).sum(-1) + (x * self.wx[:, None]).sum(-1) + self.b[:, None]
        return (y, a) if return_attention else y


class BatchedAdam:
    """Adam with one learning rate per ensemble member (leading axis of every parameter).

    L2 weight decay (added to the gradient, as ``torch.optim.Adam(weight_decay=...)``) on ``decayed``.
    """

    def __init__(self, params, lr, decayed=(), weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        self.params = list(params)
        self.lr = torch.as_tensor(lr, dtype=torch.float32)
        self.decayed = {id(p) for p in decayed}
        self.wd, (self.b1, self.b2), self.eps = float(weight_decay), betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self):
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            if self.wd and id(p) in self.decayed:
                g = g + self.wd * p
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            lr = self.lr.view(-1, *([1] * (p.dim() - 1)))
            p.sub_(lr * (m / c1) / ((v / c2).sqrt() + self.eps))

    def zero_grad(self):
        for p in self.params:
            p.grad = None
