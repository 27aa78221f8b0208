"""Matching a layer's regions to the regions stored in a model folder (one rule for both front doors).

Prediction reuses the views stored with a model, so every region of the layer must be found
among the model's regions. The rule, in order:

1. ``id_field`` (REGION_ID_FIELD / --region-id) given: that field only.
2. The field the model was trained with (recorded in the model folder), when the layer has it
   and all its values match.
3. Otherwise every field (and the feature ids) whose values all match a stored id. If they
   all pick the same regions, that is the match; if two of them pick different regions (say
   the GeoPackage ``fid`` 1..100 and ``region_id`` both fall among the ids 0..179), the
   choice is ambiguous and the run is refused: a value merely falling in range is no evidence.

When no field matches every region, the best partial match is reported and ``rows`` is None.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ToptDataError
from .joins import id_string

FEATURE_ID = "(feature id)"


@dataclass
class RegionMatch:
    field: str | None        # the field the regions were matched by (FEATURE_ID for feature ids), None: none
    ids: list | None         # the layer's region ids by that field (canonical strings)
    rows: np.ndarray | None  # row of each layer region in the stored data; None unless every region matched
    matched: int             # layer regions whose id is a stored id
    message: str             # what was done, for the log


def _ids(values) -> list:
    return [id_string(v) for v in values]


def _full_rows(ids, lookup):
    """Rows when every id is present, non-null and unique; else None."""
    if any(x is None or x not in lookup for x in ids) or len(set(ids)) != len(ids):
        return None
    return np.asarray([lookup[x] for x in ids], dtype=np.int64)


def match_regions(columns: dict, stored_ids, id_field: str = "", trained_field: str | None = None,
                  feature_ids=None) -> RegionMatch:
    """Match the layer's regions to ``stored_ids``.

    Args:
        columns: field name -> the layer's values of that field (one per region, layer order).
        stored_ids: the model's region ids (``RegionData.region_ids`` stored at training).
        id_field: the user's REGION_ID_FIELD, or "" to choose automatically.
        trained_field: the id field the model was trained with (None for old model folders).
        feature_ids: the layer's feature ids (QGIS ``fid``), a candidate when no id field is given.
    """
    lookup = {str(x): i for i, x in enumerate(stored_ids)}
    n_layer = len(next(iter(columns.values()))) if columns else len(feature_ids or [])
    if id_field:
        if id_field not in columns:
            raise ToptDataError(f"REGION_ID_FIELD: the field '{id_field}' is not in the layer (fields: "
                                f"{', '.join(list(columns)[:20])}); choose one of its fields.")
        ids = _ids(columns[id_field])
        rows = _full_rows(ids, lookup)
        hits = sum(1 for x in ids if x in lookup)
        if rows is not None:
            return RegionMatch(id_field, ids, rows, hits, f"Regions matched to the model's regions by '{id_field}'.")
        return RegionMatch(id_field, ids, None, hits, f"Only {hits} of {n_layer} regions match a region id stored "
                           f"in the model by '{id_field}'.")
    candidates = {name: _ids(values) for name, values in columns.items()}
    if feature_ids is not None:
        candidates[FEATURE_ID] = [str(x) for x in feature_ids]
    if trained_field and trained_field in candidates:
        rows = _full_rows(candidates[trained_field], lookup)
        if rows is not None:
            return RegionMatch(trained_field, candidates[trained_field], rows, n_layer,
                               f"Regions matched to the model's regions by '{trained_field}', the id field the "
                               "model was trained with.")
    full = {name: rows for name, ids in candidates.items() if (rows := _full_rows(ids, lookup)) is not None}
    if full:
        distinct = {}
        for name, rows in full.items():
            distinct.setdefault(rows.tobytes(), []).append(name)
        if len(distinct) > 1:
            groups = [" = ".join(f"'{x}'" for x in names) for names in distinct.values()]
            hint = f" (the model was trained with '{trained_field}')" if trained_field else ""
            raise ToptDataError(
                f"The layer's regions can be matched to the model's regions by {' or '.join(groups)}, and these "
                f"pick different regions{hint}; expected one field that holds the ids the model was trained "
                "with. Set REGION_ID_FIELD (--region-id) to that field.")
        name = next(iter(full))
        names = next(iter(distinct.values()))
        why = ("" if trained_field is None else
               f" (the field '{trained_field}' the model was trained with is not in the layer or does not match)")
        return RegionMatch(name, candidates[name], full[name], n_layer,
                           f"Regions matched to the model's regions by {' = '.join(repr(x) for x in names)}{why}; "
                           "set REGION_ID_FIELD to choose the field yourself.")
    best = max(candidates, key=lambda k: sum(1 for x in candidates[k] if x in lookup), default=None)
    hits = 0 if best is None else sum(1 for x in candidates[best] if x in lookup)
    if not hits:
        return RegionMatch(None, None, None, 0, "No field of the layer holds the model's region ids.")
    return RegionMatch(best, candidates[best], None, hits, f"Only {hits} of {n_layer} regions match a region id "
                       f"stored in the model (best field: '{best}').")
