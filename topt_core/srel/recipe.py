"""The training recipe a layer's POIs call for: sparse real POIs get the locality objectives.

Sparse real POIs (a median of 2-6 per census tract, a fifth of the tracts or more with none) make one
region's counts noise. On the real-city benchmark (``bench/realcity.py``, issue 18, held-out seeds) three
options together lifted Ridge on the embedding in both cities and on both fold schemes: masked regions
rebuilt from their neighbours (``mask_weight`` 5, ``mask_rate`` 0.5), two contrastive input-dropout passes
(``contrast_weight`` 1) and the view encodings side by side (``view_fusion="concat"``). Dense POIs
(Manhattan's 88 per region, the synthetic cities' 50) were never measured with them and keep the plain
recipe. ``SrelConfig.sparse_recipe``: "auto" (on under the derived views' rule: the median region holds fewer
than 10 POIs) | "on" | "off". A field set away from its default wins over the recipe's value; a field set to its
default value cannot be told from one left alone, so to keep e.g. the attention fusion with the two objectives,
turn the recipe off and set ``mask_weight``, ``mask_rate`` and ``contrast_weight`` yourself.
"""
from __future__ import annotations

from ..config import SrelConfig

RECIPE = {"mask_weight": 5.0, "mask_rate": 0.5, "contrast_weight": 1.0, "view_fusion": "concat"}


def resolve(config: SrelConfig, data) -> tuple[SrelConfig, str]:
    """(the config with the recipe applied and ``sparse_recipe`` "on" or "off", a log line or "")."""
    from ..views.derived import CONTEXT

    value = config.sparse_recipe
    on = value in ("on", True) or (value == "auto" and CONTEXT.auto_on(data))
    med = CONTEXT.median_pois(data)
    where = "no POIs" if med is None else f"median {med:g} POIs per region"
    why = f" (auto: {where})" if value == "auto" else ""
    if not on:
        return config.replace(sparse_recipe="off"), (f"Training recipe: plain{why}." if value == "auto" else "")
    defaults = SrelConfig()
    changes = {k: v for k, v in RECIPE.items() if getattr(config, k) == getattr(defaults, k)}
    kept = [k for k in RECIPE if k not in changes]
    note = (f"Training recipe for sparse POIs{why}: masked regions rebuilt from their neighbours (weight "
            f"{config.replace(**changes).mask_weight:g}), two contrastive passes, the view encodings side by side; "
            "about 2.5 times the plain recipe's time")
    if kept:
        note += f"; kept as set: {', '.join(kept)}"
    return config.replace(sparse_recipe="on", **changes), note + "."
