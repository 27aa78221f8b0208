"""SREL model folders: safetensors weights + a JSON manifest (config, input schema); loading runs no code.

Folders written by earlier versions keep loading: their settings pass through
``config.upgrade_srel_settings`` before the model is rebuilt.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import checkpoint
from ..config import SrelConfig, upgrade_srel_settings
from ..errors import ToptCheckpointError, ToptConfigError
from ..files import atomic_file
from .model import build_model

FORMAT = "topt-srel"
WEIGHTS_FILE = "model.safetensors"


def save_model(result_or_model, folder, data=None) -> Path:
    """Write the model (and optionally its input RegionData, never labels) to ``folder``."""
    from safetensors.torch import save_file

    model = result_or_model if isinstance(result_or_model, torch.nn.Module) else result_or_model.model   # SrelResult
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.refuse_unsafe_files(folder)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_file(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    files = [WEIGHTS_FILE]
    body = {"config": model.config.to_dict(), "input_schema": model.schema}
    if data is not None:
        data.validate()
        body["region_data"] = checkpoint.save_region_data(folder, data.without_targets())
        files.append(checkpoint.REGION_DATA_FILE)
    elif (folder / checkpoint.REGION_DATA_FILE).exists():
        (folder / checkpoint.REGION_DATA_FILE).unlink()
    checkpoint.write_manifest(folder, FORMAT, body, files)
    return folder


def load_model(folder):
    """Load a folder written by ``save_model``; checks format, versions, hashes and shapes. No code runs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest = checkpoint.read_manifest(folder, FORMAT)
    if WEIGHTS_FILE not in manifest["files"]:
        raise ToptCheckpointError(f"{Path(folder) / checkpoint.CONFIG_FILE} does not list {WEIGHTS_FILE}; "
                                  "expected an SREL model folder. Retrain the model.")
    try:
        settings = dict(manifest["config"])
        config = SrelConfig.from_dict(upgrade_srel_settings(settings))
        schema = manifest["input_schema"]
        model = build_model(config, schema)
    except (KeyError, TypeError, ValueError, ToptConfigError) as exc:
        raise ToptCheckpointError(f"The settings in {Path(folder) / checkpoint.CONFIG_FILE} cannot be used "
                                  f"({exc}); expected a config written by this topt. Retrain the model.") from exc
    try:
        state = load_file(str(Path(folder) / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise ToptCheckpointError(f"{Path(folder) / WEIGHTS_FILE} is not a readable safetensors file ({exc}); "
                                  "retrain the model.") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ToptCheckpointError(f"The weights in {folder} do not fit the model described by its config "
                                  f"({' '.join(first[:3])[:300]}); expected matching shapes. Retrain the model.") from exc
    return model.eval()
