"""Mode-neutral self-supervised targets: what a view hands to stage 1 (``View.ssl_target``).

A view says *what* its objective compares, not how the loss is computed: the attention mode
(``topt_core.srel.modes``) turns a target into its exact form (N x N matrices, the dense mode) or its
sampled form (per-pair, nothing N x N, the sparse mode), and the view applies its decoders and calls
the result (``View.ssl_loss``). numpy only: the data layer stays free of torch and of stage 1.

* ``SimilarityTarget``: the vectors whose row cosines the decoded embeddings should match, and which
  regions count (``mask``; None: all of them).
* ``FlowTarget``: the winsorised OD table whose per-origin and per-destination distributions the
  decoded source and target embeddings should predict.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SimilarityTarget:
    vectors: np.ndarray                 # (N, K) float64: the target is the cosine of two rows
    mask: np.ndarray | None = None      # (N,) bool: regions that have the view; None: every region counts
    form = "similarity"                 # the mode method that builds its loss: ``AttentionMode.similarity_loss``


@dataclass
class FlowTarget:
    flows: object                       # (N, N) scipy csr, float64: the winsorised OD table
    form = "flows"                      # ``AttentionMode.flows_loss``
