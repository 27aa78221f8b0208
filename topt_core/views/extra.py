"""The extra view: the user's own numeric region fields (population, income, ...)."""
from __future__ import annotations

import numpy as np

from .. import joins
from ..errors import ToptDataError
from .base import TableView
from .inputs import Param, Records, Rows, Source


def region_fields(rec: Records) -> Rows:
    """The front doors' rows from numeric region fields (``region_fields`` join): one column per field,
    an empty value read as 0 (with a warning), a negative or absurd one refused (``numeric_table``)."""
    param = rec.names.get("fields", "region fields")
    table, names, n_null = numeric_table(rec.columns, rec.n, what=f"{param} field")
    return Rows(table, names, warnings=[f"{param}: {n_null} empty value(s) were read as 0."] if n_null else [])


class ExtraView(TableView):
    name, label, facet_rank = "extra", "Extra numeric region fields", 50
    attr, columns_attr, column_prefix, columns_label = "extra", "extra_names", "extra", "extra fields"
    counts, facet_lead = False, "Other attributes"
    sources = (Source("region_fields", (
        Param("EXTRA_FIELDS", "--extra-fields", "fields", "Extra numeric region fields",
              "Other numeric region fields (population, floor area). Never the value to predict.", numeric=True),),
        region_fields),)


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
