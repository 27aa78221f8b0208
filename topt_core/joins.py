"""Joined records -> region rows: ids, weights and what was dropped (pure numpy/scipy).

Both front doors (QGIS layers in ``processing_provider/adapters``, files in ``topt_core.io``)
locate every record in a region themselves (``region_index``: row of the region, ``-1`` =
outside every region / unknown id) and then call the same counting code (each view's module
in ``topt_core.views``) with these helpers, so they give the same ``RegionData``.

``ViewReport`` says what a view builder dropped and why; the adapters turn its ``messages()``
into warnings. Values that cannot be meant as counts (negative, absurdly large) raise
``ToptDataError`` with what was wrong, what was expected and how to fix it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ToptDataError

#: weights/counts above this are refused: no OD table, POI or land-use amount is that large,
#: it is almost always an id, a timestamp or a no-data sentinel read as a number
MAX_WEIGHT = 1e12


@dataclass
class ViewReport:
    """What a view builder dropped, for the user's log."""

    view: str
    records: int = 0            # records given
    used: int = 0               # records that went into the matrix
    outside: int = 0            # not inside any region / id not among the regions
    null_key: int = 0           # null category / class
    bad_weight: int = 0         # null or NaN weight (record dropped)
    zero_weight: int = 0        # weight 0 (kept, contributes nothing)
    self_loops: int = 0         # OD records with origin == destination (kept)
    examples: list = field(default_factory=list)   # a few unknown ids, for the message
    hints: list = field(default_factory=list)      # how to fix what was dropped (e.g. zero-padded ids)

    def messages(self) -> list[str]:
        out = []
        what = {"poi": "POI points", "mobility": "OD records", "landuse": "land-use pieces"}.get(self.view,
                                                                                             "records")
        if self.outside:
            where = ("have an origin or destination id that is not a region id"
                     if self.view == "mobility" and self.examples else "lie outside every region")
            ex = f" (e.g. {', '.join(map(str, self.examples[:5]))})" if self.examples else ""
            out.append(f"{self.outside} of {self.records} {what} {where}{ex}; they were left out.")
        if self.null_key:
            key = {"poi": "category", "landuse": "class"}.get(self.view, "key")
            out.append(f"{self.null_key} of {self.records} {what} have an empty {key}; they were left out.")
        if self.view == "mobility" and self.used and self.self_loops == self.used:
            out.append(f"All {self.used} OD records used start and end in the same region; the mobility view "
                       "has no flows between regions. Check MOBILITY_ORIGIN_FIELD/MOBILITY_DESTINATION_FIELD.")
        if self.bad_weight:
            out.append(f"{self.bad_weight} of {self.records} {what} have an empty or non-numeric weight; "
                       "they were left out.")
        if self.outside:
            out.extend(self.hints)
        return out


# -- ids --------------------------------------------------------------------------------------------

_INTEGRAL_TEXT = re.compile(r"^-?[0-9]+\.0+$")


def id_string(value) -> str | None:
    """Canonical string form of a region id: 12, 12.0, "12" -> "12"; None/NaN/"" -> None."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    s = str(value).strip()
    if s == "" or s.upper() in ("NULL", "NONE", "NAN"):
        return None
    if _INTEGRAL_TEXT.match(s):     # "12.0" (a CSV/text column) means the same region as 12 and "12"
        s = s.split(".", 1)[0]
    return s


def normalise_ids(values) -> np.ndarray:
    """Region ids as canonical strings; raises on null ids."""
    out = [id_string(v) for v in values]
    bad = [i for i, s in enumerate(out) if s is None]
    if bad:
        raise ToptDataError(f"{len(bad)} region(s) have an empty id (e.g. feature rows {bad[:5]}); expected "
                            "a value on every region. Fill the id field or leave REGION_ID_FIELD empty to "
                            "use feature ids.")
    return np.asarray(out, dtype=object).astype(str)


def index_of(values, region_ids) -> np.ndarray:
    """Row index of each value among ``region_ids`` (canonical strings); -1 where unknown or null."""
    lookup = {str(r): i for i, r in enumerate(region_ids)}
    return np.asarray([lookup.get(id_string(v), -1) if id_string(v) is not None else -1 for v in values],
                      dtype=np.int64)


def unknown_examples(value_lists, index_lists, limit: int = 5) -> list:
    """A few distinct values whose index is -1 (unknown ids), in order of appearance."""
    out = []
    for values, idx in zip(value_lists, index_lists):
        for v, i in zip(values, idx):
            if len(out) >= limit:
                return out
            s = id_string(v)
            if i < 0 and s not in out:
                out.append(s)
    return out


def padding_hint(unknown, region_ids) -> str | None:
    """Say so when unknown ids match region ids once leading zeros are ignored ("007" vs "7")."""
    strip = lambda x: x.lstrip("0") or "0"  # noqa: E731
    known = {strip(str(r)): str(r) for r in region_ids}
    pairs = [(u, known[strip(u)]) for u in unknown if u is not None and strip(u) in known]
    if not pairs:
        return None
    u, r = pairs[0]
    return (f"The OD ids look {'zero-padded' if len(u) > len(r) else 'unpadded'} compared with the region ids "
            f"('{u}' vs '{r}'); pad or strip the leading zeros so both use the same form (Field Calculator: "
            "lpad(...) or to_int(...)), or join by a field with the same form.")


# -- weights ----------------------------------------------------------------------------------------

def clean_weights(weights, count: int, what: str):
    """Weights as float array (ones if None) and a mask of usable rows.

    NaN/None -> row unusable (reported); negative or > MAX_WEIGHT -> ToptDataError.
    """
    if weights is None:
        return np.ones(count, dtype=float), np.ones(count, dtype=bool)
    w = np.asarray([np.nan if v is None else v for v in weights], dtype=object)
    try:
        w = w.astype(float)
    except (TypeError, ValueError):
        bad = []
        for v in w:
            try:
                float(v)
            except (TypeError, ValueError):
                bad.append(v)
        raise ToptDataError(f"The {what} contains non-numeric values (e.g. {bad[:3]}); expected numbers >= 0. "
                            "Choose a numeric field.") from None
    if w.shape != (count,):
        raise ToptDataError(f"{w.shape[0]} {what} values for {count} records; expected one per record.")
    ok = np.isfinite(w)
    if (w[ok] < 0).any():
        neg = w[ok][w[ok] < 0]
        raise ToptDataError(f"The {what} has {len(neg)} negative value(s) (e.g. {neg[:3].tolist()}); expected "
                            "counts or weights >= 0. Fix those records or choose another field.")
    if (w[ok] > MAX_WEIGHT).any():
        big = w[ok][w[ok] > MAX_WEIGHT]
        raise ToptDataError(f"The {what} has {len(big)} value(s) above {MAX_WEIGHT:.0e} (e.g. {big[:3].tolist()}); "
                            "expected trip counts or weights. It looks like an id, a timestamp or a no-data "
                            "code; choose the count field or clean those records.")
    return w, ok


# -- keys and pairs ---------------------------------------------------------------------------

def keys(values):
    """Category/class values as strings; None where null."""
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            out.append(None)
            continue
        out.append(id_string(v))
    return out


def duplicate_regions_warning(pairs, region_ids) -> str | None:
    """The warning for regions with identical polygons: points and land use go to the first of each pair."""
    pairs = sorted({(min(int(i), int(j)), max(int(i), int(j))) for i, j in pairs if int(i) != int(j)})
    if not pairs:
        return None
    ex = ", ".join(f"'{region_ids[i]}' = '{region_ids[j]}'" for i, j in pairs[:5])
    return (f"{len(pairs)} pair(s) of regions have identical polygons ({ex}); POIs, OD line ends and land use "
            "inside them were all counted in the first region of each pair, the other gets none. Remove the "
            "duplicates (Delete duplicate geometries) or merge their ids.")


def adjacency_from_pairs(i, j, n: int) -> np.ndarray:
    """(2, E) undirected, deduplicated neighbour edges from candidate pairs (self-pairs dropped)."""
    from .spatial import symmetrise

    i = np.asarray(i, dtype=np.int64).reshape(-1)
    j = np.asarray(j, dtype=np.int64).reshape(-1)
    if i.shape != j.shape:
        raise ToptDataError(f"{i.size} vs {j.size} adjacency endpoints; expected pairs.")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ToptDataError(f"adjacency pairs reference regions outside [0, {n}).")
    keep = i != j
    return symmetrise(np.stack([i[keep], j[keep]]), n)
