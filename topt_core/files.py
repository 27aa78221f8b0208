"""Files written so that a failed or cancelled run leaves nothing half-written, and file hashes.

Everything is first written to a hidden temporary sibling (same filesystem, so the final
rename is atomic); only when the block finishes without error does it replace the
destination. The one home of write-then-rename and sha256 in the project: model folders,
reports, output layers (``io.write_layer``), the text-vector cache.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ToptDataError

#: files of a model folder that a new model replaces (others in the folder are left alone)
MODEL_FILE_SUFFIXES = (".safetensors",)
MODEL_FILE_NAMES = ("config.json",)


def sha256_file(path, memo: dict | None = None) -> str:
    """sha256 of a file; ``memo`` (optional dict) remembers it by (path, size, mtime)."""
    path = Path(path)
    key = None
    if memo is not None:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key in memo:
            return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if memo is not None:
        memo[key] = digest
    return digest


def writable_parent(dest: Path) -> Path:
    """The folder ``dest`` goes into, created if needed; clear errors when it cannot be written."""
    parent = dest.parent if str(dest.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in [parent, *parent.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise ToptDataError(f"Cannot create the output folder {parent}: {blocker} is a file, not a folder; expected an "
                                "output inside a folder. Choose another output path.") from None
        raise ToptDataError(f"Cannot create the output folder {parent} ({exc.strerror}); choose another "
                            "output path.") from None
    if not os.access(parent, os.W_OK):
        raise ToptDataError(f"The output folder {parent} is not writable; choose another output path.")
    if dest.exists() and not os.access(dest, os.W_OK):
        raise ToptDataError(f"The output {dest} exists and is read-only; choose another output path or make "
                            "it writable.")
    return parent


def _model_owned(path: Path) -> bool:
    return path.is_file() and (path.suffix in MODEL_FILE_SUFFIXES or path.name in MODEL_FILE_NAMES)


@contextmanager
def atomic_folder(dest):
    """Yield a temporary folder; on success its files move into ``dest`` (created if needed).

    Model files already in ``dest`` that the new write does not produce (``*.safetensors``,
    ``config.json``) are removed, so an old model never mixes with a new one; other files a user
    keeps in that folder are left alone. ``config.json`` moves last: until it does, the folder
    still describes the old model (its hashes reject a half-replaced folder).
    """
    dest = Path(dest)
    parent = writable_parent(dest)
    if dest.exists() and not dest.is_dir():
        raise ToptDataError(f"The model output {dest} is an existing file; expected a folder path. Choose a "
                            "new folder name.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=parent))
    try:
        yield tmp
        dest.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in tmp.iterdir())
        for old in dest.iterdir():
            if old.name not in names and _model_owned(old):
                old.unlink()
        for name in sorted(names, key=lambda x: x in MODEL_FILE_NAMES):
            target = dest / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(dest):
    """Yield a temporary file path next to ``dest``; on success it replaces ``dest`` (usual permissions)."""
    dest = Path(dest)
    parent = writable_parent(dest)
    if dest.is_dir():
        raise ToptDataError(f"The output {dest} is an existing folder; expected a file path.")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.part-", suffix=dest.suffix, dir=parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(dest, data: bytes) -> Path:
    with atomic_file(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest, text: str) -> Path:
    return write_bytes(dest, text.encode("utf-8"))


@contextmanager
def atomic_sidecars(dest):
    """Yield a temporary folder for a file that comes with sidecars (a Shapefile is .shp + .dbf + ...).

    On success every file written there moves next to ``dest``, each renamed to ``dest``'s stem.
    """
    dest = Path(dest)
    parent = writable_parent(dest)
    tmp = Path(tempfile.mkdtemp(prefix=".topt-", dir=parent))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):
            os.replace(f, parent / (dest.stem + f.name[len(dest.stem):]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
