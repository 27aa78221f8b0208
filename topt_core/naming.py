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
