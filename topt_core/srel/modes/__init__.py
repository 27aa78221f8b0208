"""The attention modes of stage 1, siblings behind one interface (``base.AttentionMode``).

* ``dense``: every region attends to every region; exact losses (N x N).
* ``sparse``: local edges plus anchor clusters; sampled losses (nothing N x N).

``train_srel`` and ``embed`` resolve the mode once (``resolve``: ``config.resolve_attention`` maps
"auto" to a name) and hand the mode object on; nothing else branches on the mode's name. A third
mode is one more sibling module with a ``MODE`` and its line in ``REGISTRY`` (and its name in
``config.ATTENTION_MODES``).
"""
from __future__ import annotations

from ...config import resolve_attention
from . import dense, sparse
from .base import AttentionMode

REGISTRY = {m.name: m for m in (dense.MODE, sparse.MODE)}


def get(mode) -> AttentionMode:
    """The mode named ``mode`` (or ``mode`` itself if it is one)."""
    if isinstance(mode, AttentionMode):
        return mode
    try:
        return REGISTRY[mode]
    except KeyError:
        raise ValueError(f"attention mode {mode!r} is not one of {sorted(REGISTRY)}") from None


def resolve(config, n: int) -> AttentionMode:
    """The mode a run over ``n`` regions uses under ``config.attention``."""
    return REGISTRY[resolve_attention(config, n)]
