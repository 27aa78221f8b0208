"""Output field names that every format can hold, chosen once for both front doors."""
from __future__ import annotations

import re


def safe_field_name(name: str, prefix: str = "", max_len: int = 63) -> str:
    """A portable field name: lowercase ascii letters, digits and '_', starting with a letter.

    Both front doors name output fields with this.
    """
    s = re.sub(r"[^0-9a-zA-Z_]+", "_", str(name)).strip("_").lower() or "value"
    if not s[0].isalpha() and not prefix:
        s = "f_" + s
    return (prefix + s)[:max_len]


#: formats whose field names are limited (dBase: 10 characters); GeoPackage, GeoJSON, CSV are not
NAME_LIMITS = {".shp": 10, ".dbf": 10}


def name_limit(destination) -> int | None:
    """The field-name length a destination (file path or OGR URI) can hold, or None (no practical limit)."""
    path = str(destination or "").split("|", 1)[0].lower()
    for suffix, limit in NAME_LIMITS.items():
        if path.endswith(suffix):
            return limit
    return None


def fit_names(names, limit: int | None, taken=()) -> list[str]:
    """``names`` shortened to ``limit`` characters, unique among themselves and ``taken`` (case-insensitive).

    'pred_service_call_count' -> 'pred_servi', 'oof_service_call_count' -> 'oof_servic'; a clash gets a
    digit: 'pred_serv1'. Without a limit the names are returned unchanged.
    """
    if not limit:
        return list(names)
    used = {t.lower() for t in taken}
    out = []
    for name in names:
        cand, k = name[:limit], 1
        while cand.lower() in used:
            tail = str(k)
            cand, k = name[:limit - len(tail)] + tail, k + 1
        used.add(cand.lower())
        out.append(cand)
    return out
