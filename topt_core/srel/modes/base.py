"""``AttentionMode``: the interface of one attention mode of stage 1 (its siblings: ``dense``, ``sparse``).

A mode decides which region pairs attend, and everything that follows from that choice:

* ``pair_inputs``: the pair features the attention biases read (and the mode's ``layout``, e.g. edges);
* ``context``: the attention context of a forward pass (its biases; ``attend`` runs one layer);
* ``similarity_loss`` / ``flows_loss``: a view's mode-neutral target (``topt_core.targets``) in the
  mode's loss form, exact (N x N) or sampled (per pair), as a callable of the decoded embeddings;
* ``estimate_memory`` / ``check_memory``: a training step's peak before allocating it;
* ``describe``: the mode in words for the log; ``check_config``: settings the mode cannot run;
* ``layer_average`` / ``links``: its attention weights as map data (``srel/links.py``).

``topt_core.config.resolve_attention`` maps "auto" to a mode's name; ``modes.resolve`` gives the mode.
Adding a mode is one more sibling module with a ``MODE`` and one line in ``modes/__init__.py``.
"""
from __future__ import annotations


def forward_passes(config) -> int:
    """Forward graphs one training step keeps for its backward pass: the masked pass carries the other losses,
    the contrastive objective adds two dropout passes (``srel/train.py``); one without either."""
    return max(1, int(config.mask_weight > 0) + 2 * int(config.contrast_weight > 0))


def passes_advice(config) -> str:
    """The way out a refused run has when the sparse-POI recipe's extra passes triple its attention memory."""
    return (" (the sparse-POI recipe's masked and contrastive passes take about 3 times the attention's memory: "
            "SPARSE_RECIPE=off, --sparse-recipe off, trains without them)") if forward_passes(config) > 1 else ""


class AttentionMode:
    name = ""
    whole_rows = False      # its links can hold each region's whole attention row (every partner is a region)

    # -- configuration and the log ----------------------------------------------------------------
    def check_config(self, config, data) -> None:
        """Refuse settings this mode cannot run on ``data`` (``ToptConfigError``); nothing by default."""

    def auto_reason(self, n: int, config) -> str:
        """Why attention='auto' chose this mode for ``n`` regions."""
        raise NotImplementedError

    def summary(self, n: int, config, why: str) -> str:
        raise NotImplementedError

    def describe(self, n: int, config) -> str:
        """The mode in words, with why (for the log)."""
        why = self.auto_reason(n, config) if config.attention == "auto" else "as set"
        return self.summary(n, config, why)

    # -- memory --------------------------------------------------------------------------------------
    def estimate_memory(self, n: int, config) -> int:
        raise NotImplementedError

    def check_memory(self, n: int, config, device: str = "cpu") -> int:
        """Raise ``ToptResourceError`` if training over ``n`` regions will not fit; return the estimate."""
        raise NotImplementedError

    # -- inputs and attention --------------------------------------------------------------------------
    def pair_inputs(self, inp, model, data, geometry, edges, flow, with_flow, stats, to) -> None:
        """Fill ``inp.pairs`` (and ``inp.layout``) for this mode. ``flow``: the mobility view's winsorised
        symmetric OD (``views.mobility.symmetric_flow``, sparse N x N) or None without that view."""
        raise NotImplementedError

    def context(self, model, inp):
        """The attention context (an ``attention.AttentionContext``), once per forward pass."""
        raise NotImplementedError

    # -- self-supervised losses ------------------------------------------------------------------------
    def objective(self, target, config, device):
        """A view's mode-neutral target -> the callable loss of the decoded embeddings, in this mode's form."""
        return getattr(self, f"{target.form}_loss")(target, config, device)

    def similarity_loss(self, target, config, device):
        raise NotImplementedError

    def flows_loss(self, target, config, device):
        raise NotImplementedError

    # -- interpretation ----------------------------------------------------------------------------------
    def layer_average(self, maps):
        """The attention weights the layers kept (``RegionAttention.last_attention``), averaged over layers."""
        raise NotImplementedError

    def links(self, maps, inp, data, k: int) -> tuple:
        """(target, source, weight, rank, attn_in, attn_dist) from the members' layer-averaged weights."""
        raise NotImplementedError
