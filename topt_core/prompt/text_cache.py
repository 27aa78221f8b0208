"""The on-disk cache of text-encoder vectors: one ``.npy`` per prompt (never pickle).

Vectors live under ``<cache>/vectors/<model key>/<sha256 of the text>.npy``; the model key
hashes everything that changes a vector (source, weights, pooling, dtype, maximum length,
transformers major version). Prompts that are all cached never load the model.
Default cache folder: ``$TOPT_CACHE_DIR`` or ``~/.cache/topt``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import ToptDataError
from ..files import sha256_file, write_bytes


def default_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` if given, else ``$TOPT_CACHE_DIR``, else ``~/.cache/topt``."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("TOPT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "topt"


class HashMemo:
    """sha256 of big weight files, remembered by (path, size, mtime) in ``<cache>/file_hashes.json``."""

    def __init__(self, cache: Path):
        self.path = Path(cache) / "file_hashes.json"
        try:
            self.memo = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.memo = {}
        self.dirty = False

    def sha(self, path: Path) -> str:
        n = len(self.memo)
        out = sha256_file(path, self.memo)
        self.dirty = self.dirty or len(self.memo) != n
        return out

    def save(self) -> None:
        if self.dirty:
            try:
                write_bytes(self.path, json.dumps(self.memo, indent=0).encode("utf-8"))
            except (OSError, ToptDataError):
                pass


class VectorCache:
    """Vectors of one model (``model_key``) of width ``dim`` in ``<cache>/vectors/<model_key>``."""

    def __init__(self, cache: Path, model_key: str, dim: int):
        self.folder = Path(cache) / "vectors" / model_key
        self.dim = int(dim)

    def path(self, text: str) -> Path:
        h = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self.folder / h[:2] / f"{h}.npy"

    def get(self, texts) -> list:
        """The cached vector of each text, or None (missing, unreadable or of another width)."""
        out = []
        for t in texts:
            p = self.path(t)
            v = None
            if p.is_file():
                try:
                    v = np.load(p, allow_pickle=False)
                    if v.shape != (self.dim,) or not np.isfinite(v).all():
                        v = None
                except (OSError, ValueError):
                    v = None
            out.append(v)
        return out

    def put(self, text: str, vec: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(vec, dtype=np.float32), allow_pickle=False)
        try:
            write_bytes(self.path(text), buf.getvalue())
        except (OSError, ToptDataError):
            pass  # a read-only cache only costs speed
