"""Seeded, deterministic training runs: the RNG state around a run and the seed of each restart.

A run seeds torch and numpy, switches on deterministic algorithms and gives the caller's state back
afterwards, so two runs with the same seed on the same CPU give bit-identical models.
"""
from __future__ import annotations

import os

import numpy as np
import torch


class Deterministic:
    """Seed torch/numpy and switch on deterministic algorithms; restore the caller's state after."""

    def __init__(self, seed: int, device: str):
        self.seed, self.device = seed, device

    def __enter__(self):
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        self._fork = torch.random.fork_rng(devices=devices)
        self._fork.__enter__()
        self._np_state = np.random.get_state()
        self._det = torch.are_deterministic_algorithms_enabled()
        if self.device.startswith("cuda"):
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % (2 ** 32))
        return self

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self._det)
        np.random.set_state(self._np_state)
        return self._fork.__exit__(*exc)


def member_seed(seed: int, k: int) -> int:
    """Seed of restart ``k``: the config's seed for the first, a SeedSequence draw for the others."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([int(seed) % 2 ** 32, k]).generate_state(1)[0])
