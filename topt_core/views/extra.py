"""The extra view: the user's own numeric region fields (population, income, ...)."""
from __future__ import annotations

import numpy as np

from .. import joins
from ..errors import ToptDataError
from .base import TableView


class ExtraView(TableView):
    name, label, facet_rank = "extra", "Extra numeric region fields", 50
    attr, columns_attr, column_prefix, columns_label = "extra", "extra_names", "extra", "extra fields"
    counts, facet_lead = False, "Other attributes"


VIEW = ExtraView()


def numeric_table(columns: dict, n: int, what: str = "land-use field"):
    """(N, K) table from per-region numeric fields; null -> 0 (counted); negative -> error.

    Returns (table, names, n_null) where n_null counts null cells set to 0.
    """
    names = list(columns)
    table = np.zeros((n, len(names)), dtype=float)
    n_null = 0
    for j, name in enumerate(names):
        vals = list(columns[name])
        if len(vals) != n:
            raise ToptDataError(f"{what} '{name}' has {len(vals)} values for {n} regions; expected one per region.")
        w, ok = joins.clean_weights(vals, n, f"{what} '{name}'")
        n_null += int((~ok).sum())
        table[:, j] = np.where(ok, w, 0.0)
    return table, names, n_null
