"""Early stopping on the self-supervised loss (never on a label), keeping the best epoch's weights."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ToptConfigError


class BestState:
    """Early stopping on the self-supervised loss, keeping the weights of the best epoch.

    On the CPU every epoch is checked exactly (a float costs nothing). On a GPU nothing leaves the
    device inside the loop: the best loss, the patience counter and the best weights are updated
    with ``torch.where`` on the device, and the host looks only every ``SYNC_EVERY`` epochs (so a
    run may go up to that many epochs past its patience; the best weights are still the best epoch's).
    """

    SYNC_EVERY = 10

    def __init__(self, model, config, device, device_side: bool | None = None):
        self.model, self.config = model, config
        self.gpu = torch.device(device).type == "cuda" if device_side is None else device_side
        self.best, self.wait, self.state, self.losses = float("inf"), 0, None, []
        if self.gpu:
            self.best_t = torch.tensor(float("inf"), device=device)
            self.wait_t = torch.zeros((), dtype=torch.long, device=device)
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, loss, epoch: int) -> bool:
        """Record this epoch's loss; True when training should stop."""
        cfg = self.config
        if not self.gpu:
            value = float(loss.detach())
            finite_or_raise(value, epoch, cfg)
            self.losses.append(value)
            if value < self.best - cfg.min_delta * abs(self.best if np.isfinite(self.best) else value):
                self.best, self.wait = value, 0
                self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                self.wait += 1
            return self.wait >= cfg.patience
        value = loss.detach()
        self.losses.append(value)
        tol = cfg.min_delta * torch.where(torch.isfinite(self.best_t), self.best_t.abs(), value.abs())
        improved = value < self.best_t - tol
        self.best_t = torch.where(improved, value, self.best_t)
        self.wait_t = torch.where(improved, torch.zeros_like(self.wait_t), self.wait_t + 1)
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                self.state[k].copy_(torch.where(improved, v, self.state[k]))
        if epoch % self.SYNC_EVERY and epoch < cfg.epochs:
            return False
        recent = torch.stack(self.losses[-self.SYNC_EVERY:]).cpu()            # one transfer per SYNC_EVERY
        for i, v in enumerate(recent.tolist()):
            finite_or_raise(v, epoch - len(recent) + 1 + i, cfg)
        self.best, self.wait = float(self.best_t), int(self.wait_t)
        return self.wait >= cfg.patience

    def history(self) -> list:
        return [float(v) for v in self.losses] if not self.gpu else torch.stack(self.losses).cpu().tolist()

    def restore(self):
        if self.state is not None:
            self.model.load_state_dict(self.state)


def finite_or_raise(value: float, epoch: int, cfg) -> None:
    if not np.isfinite(value):
        raise ToptConfigError(f"SREL training diverged at epoch {epoch} (loss {value}); expected a finite loss. "
                              f"Lower the learning rate (now {cfg.lr}).")
