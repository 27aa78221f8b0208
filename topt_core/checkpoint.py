"""Model folders: a JSON manifest plus safetensors files, checked before use.

A saved model is a folder holding ``config.json`` (format name, schema and
topt versions, settings, input schema, sha256 of every weights file) and
``*.safetensors`` files. Loading never executes code: no pickle, no
``torch.load``; a folder containing pickle-capable files is refused. Region
data (the inputs, never labels) can be stored next to the model so a later
stage can rebuild region descriptions from the folder alone.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ToptCheckpointError
from .files import sha256_file, write_text

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
REGION_DATA_FILE = "region_data.safetensors"
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt")


def _major(version: str) -> str:
    return str(version).split(".")[0]


def refuse_unsafe_files(folder: Path) -> None:
    bad = sorted(p.name for p in Path(folder).iterdir() if p.suffix.lower() in UNSAFE_SUFFIXES)
    if bad:
        raise ToptCheckpointError(
            f"The model folder {folder} contains pickle-capable files {bad}, which topt never loads; "
            "expected only config.json and *.safetensors. Delete those files or retrain into an empty folder.")


def write_manifest(folder: Path, fmt: str, body: dict, files: list[str]) -> Path:
    """Write config.json last (atomically), with sha256 of each listed file."""
    folder = Path(folder)
    manifest = {"format": fmt, "schema_version": SCHEMA_VERSION, "topt_version": __version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **body,
                "files": {name: sha256_file(folder / name) for name in files}}
    return write_text(folder / CONFIG_FILE, json.dumps(manifest, indent=1, sort_keys=False))


def read_manifest(folder, fmt: str) -> dict:
    """Read and check config.json and every file it lists (existence, sha256)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ToptCheckpointError(f"The model folder {folder} does not exist; expected a folder written by "
                                  "'Train region embeddings' (config.json + model.safetensors). Check the path.")
    refuse_unsafe_files(folder)
    cfg = folder / CONFIG_FILE
    if not cfg.is_file():
        raise ToptCheckpointError(f"{folder} has no {CONFIG_FILE}; expected a topt model folder. "
                                  "Choose the folder that 'Train region embeddings' wrote, or retrain.")
    try:
        manifest = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ToptCheckpointError(f"{cfg} is not valid JSON ({exc}); expected a topt manifest. "
                                  "The folder is damaged: retrain the model.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise ToptCheckpointError(f"{folder} holds format {got!r}; expected {fmt!r}. "
                                  "Choose a folder saved by the matching topt stage.")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ToptCheckpointError(f"{folder} has checkpoint schema version {manifest.get('schema_version')}; "
                                  f"this topt reads version {SCHEMA_VERSION}. Retrain with this topt version.")
    if _major(manifest.get("topt_version", "")) != _major(__version__):
        raise ToptCheckpointError(f"{folder} was written by topt {manifest.get('topt_version')}; this is topt "
                                  f"{__version__} (major versions differ). Retrain with this topt version.")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ToptCheckpointError(f"{cfg} lists no weights files; expected sha256 entries. Retrain the model.")
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise ToptCheckpointError(f"{cfg} lists the file {name!r}; expected plain *.safetensors names. "
                                      "The folder was edited by hand: retrain the model.")
        if not path.is_file():
            raise ToptCheckpointError(f"{path} is missing; the model folder is incomplete. "
                                      "Copy the whole folder, or retrain.")
        if sha256_file(path) != digest:
            raise ToptCheckpointError(f"{path} does not match its sha256 in {CONFIG_FILE} (changed after saving); "
                                      "expected the file written at training time. Restore it or retrain.")
    return manifest


# -- region data ----------------------------------------------------------------------------------

def region_data_arrays(data) -> tuple[dict, dict]:
    """RegionData (inputs only) -> (name -> array for safetensors, JSON-able metadata); each view stores itself."""
    from . import views

    arrays = {"centroids": np.asarray(data.centroids, np.float64),
              "areas": np.asarray(data.areas, np.float64)}
    meta = {"region_ids": [str(x) for x in data.region_ids], "crs": str(data.crs), "id_field": data.id_field or "",
            "names": None if data.names is None else [str(x) for x in data.names],
            "texts": {k: [str(x) for x in v] for k, v in (data.texts or {}).items()}}
    for view in views.REGISTRY:
        a, m = view.to_arrays(data)
        arrays.update(a)
        meta.update(m)
    if data.perimeters is not None:
        arrays["perimeters"] = np.asarray(data.perimeters, np.float64)
    if data.adjacency is not None:
        arrays["adjacency"] = np.ascontiguousarray(data.adjacency, dtype=np.int64)
    meta["arrays"] = sorted(arrays)
    return arrays, meta


def save_region_data(folder, data) -> dict:
    """Write region_data.safetensors into ``folder``; returns the metadata for the manifest."""
    from safetensors.numpy import save_file

    from .files import atomic_file

    arrays, meta = region_data_arrays(data)
    with atomic_file(Path(folder) / REGION_DATA_FILE) as tmp:
        save_file(arrays, str(tmp))
    return meta


def load_region_data(folder, fmt: str = "topt-srel"):
    """The RegionData (without targets) stored by ``save_model(..., data=...)``, or None."""
    from safetensors.numpy import load_file

    from .data import RegionData

    manifest = read_manifest(folder, fmt)
    meta = manifest.get("region_data")
    if not meta or REGION_DATA_FILE not in manifest["files"]:
        return None
    try:
        arrays = load_file(str(Path(folder) / REGION_DATA_FILE))
    except Exception as exc:    # SafetensorError (not a safetensors file: e.g. a pickle), OSError
        raise ToptCheckpointError(f"{Path(folder) / REGION_DATA_FILE} is not a readable safetensors file ({exc}); "
                                  "expected the file written at training time. Save the model again.") from None
    if sorted(arrays) != sorted(meta.get("arrays", [])):
        raise ToptCheckpointError(f"{REGION_DATA_FILE} holds arrays {sorted(arrays)} but the manifest lists "
                                  f"{meta.get('arrays')}; the folder is inconsistent. Save the model again.")
    from . import views

    names = meta.get("names")
    data = RegionData(region_ids=np.asarray(meta["region_ids"]), centroids=arrays["centroids"],
                      areas=arrays["areas"], perimeters=arrays.get("perimeters"), crs=meta["crs"],
                      adjacency=arrays.get("adjacency"),
                      names=None if names is None else np.asarray(names), id_field=meta.get("id_field") or "",
                      texts={k: np.asarray(v, dtype=object) for k, v in (meta.get("texts") or {}).items()})
    for view in views.REGISTRY:
        view.from_arrays(data, arrays, meta, len(meta["region_ids"]))
    try:
        return data.validate()
    except Exception as exc:
        raise ToptCheckpointError(f"The region data stored in {folder} is invalid ({exc}); "
                                  "save the model again with valid data.") from exc
