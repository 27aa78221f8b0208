"""Write-then-rename helpers: a failed or cancelled run leaves nothing half-written.

Outputs are first written to a hidden temporary sibling (same filesystem, so the
final rename is atomic); only when the block finishes without error does the
result replace the destination.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ToptDataError


def _writable_parent(dest: Path) -> Path:
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


@contextmanager
def atomic_folder(dest):
    """Yield a temporary folder; on success it replaces ``dest`` (an existing folder is swapped out)."""
    dest = Path(dest)
    parent = _writable_parent(dest)
    if dest.exists() and not dest.is_dir():
        raise ToptDataError(f"The model output {dest} is an existing file; expected a folder path. Choose a "
                            "new folder name.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=parent))
    try:
        yield tmp
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(dest):
    """Yield a temporary file path next to ``dest``; on success it replaces ``dest``."""
    dest = Path(dest)
    parent = _writable_parent(dest)
    if dest.is_dir():
        raise ToptDataError(f"The output {dest} is an existing folder; expected a file path.")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.part-", suffix=dest.suffix, dir=parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
