"""Stage 1 (SREL): spatial-aware region embeddings.

HAFusion-style view encoders, Graphormer fusion with spatial and centrality
encodings, HAFusion's self-supervised losses. Names are loaded lazily so that
``import topt_core.srel`` does not import torch; the first use does.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "train_srel": "train", "embed": "train", "save_model": "train", "load_model": "train",
    "SrelResult": "train", "SrelModel": "model", "SrelEnsemble": "model", "estimate_dense_memory": "memory",
    "check_memory": "memory", "SrelInputs": "inputs", "build_inputs": "inputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
