"""``TextEncoder``: a frozen Hugging Face model turned into one vector per text, with a vector cache.

Pooling follows the model type: masked mean for BERT-like encoders, the last token for
decoder-only LLMs (and VLMs fed text only). The model loads on the first cache miss, runs
under ``torch.inference_mode`` (fp16 on CUDA) and never trains. Where the model folder
comes from: ``text_sources.py``; the cache: ``text_cache.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from ..errors import ToptConfigError, ToptDependencyError
from .text_cache import VectorCache

ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "deberta-v2",
                 "new", "nomic_bert", "modernbert"}
HOW_TO = ("download the model elsewhere (e.g. with `huggingface-cli download` on a machine with internet), "
          "copy the folder here and pass TEXT_ENCODER=dir:/path/to/that/folder")


def offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def transformers_version() -> str:
    """The installed transformers version without importing it (metadata only)."""
    try:
        from importlib.metadata import version
        return version("transformers")
    except Exception:  # noqa: BLE001 - not installed
        return "not installed"


def require(module: str, pip_name: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ToptDependencyError(f"The Python package '{pip_name}' is missing but the text encoder needs it; "
                                  f"install it with: python -m pip install {pip_name}.") from exc


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToptConfigError(f"{folder} is not a usable Hugging Face model folder ({exc}); expected a "
                              f"config.json next to the weights; {HOW_TO}.") from None


def _text_config(cfg: dict) -> dict:
    return cfg.get("text_config") or cfg


def eta_words(seconds: float) -> str:
    """'about 4 min left', 'under a minute left', 'about 1.5 h left' (``progress.eta_words`` + "left")."""
    from ..progress import eta_words as words

    return f"{words(seconds)} left"


class EtaText:
    """Progress text with an estimate of the time left while texts are encoded.

    Texts run shortest first, so the estimate scales the time spent so far by the characters still to
    encode (``weights``: one per text in run order), not by their number. Updates at most every 2 s."""

    def __init__(self, label: str, weights, every_s: float = 2.0):
        self.label, self.every_s = label, every_s
        self.cum = np.cumsum(np.asarray(weights, dtype=float)) if len(weights) else np.zeros(1)
        self.total_n = len(weights)
        self.t0 = time.monotonic()
        self.last = -1e9

    def due(self, done: int) -> bool:
        now = time.monotonic()
        if done >= self.total_n or now - self.last >= self.every_s:
            self.last = now
            return True
        return False

    def text(self, done: int) -> str:
        spent = time.monotonic() - self.t0
        frac = float(self.cum[min(done, self.total_n) - 1] / self.cum[-1]) if done else 0.0
        if done >= self.total_n:
            return f"{self.label}: {done}/{self.total_n} encoded in {spent:.0f} s"
        left = spent * (1.0 - frac) / frac if frac > 0 else float("nan")
        return f"{self.label}: {done}/{self.total_n} encoded, " + (eta_words(left) if left == left else "starting")


class TextEncoder:
    """A frozen text encoder with an on-disk vector cache; the model loads only on a cache miss.

    Attributes: ``source``, ``dim``, ``pooling``, ``model_type``, ``info`` (dict recorded in results)
    and ``warnings`` (list of strings, e.g. for tiny random models).
    """

    def __init__(self, source: str, folder: Path, cache: Path, revision: str, pooling: str = "auto",
                 device: str = "cpu", max_length: int | None = None, warnings=()):
        self.source, self.folder, self.cache = source, Path(folder), Path(cache)
        cfg = _read_config(self.folder)
        tcfg = _text_config(cfg)
        self.model_type = str(cfg.get("model_type", "unknown"))
        self.is_encoder = self.model_type in ENCODER_TYPES
        self.pooling = ("mean" if self.is_encoder else "last") if pooling == "auto" else pooling
        if self.pooling not in ("mean", "last"):
            raise ToptConfigError(f"pooling must be auto, mean or last, got {pooling!r}.")
        dim = tcfg.get("hidden_size") or tcfg.get("d_model") or cfg.get("hidden_size")
        if not dim:
            raise ToptConfigError(f"{self.folder}/config.json has no hidden_size; expected a transformer "
                                  f"language model folder; {HOW_TO}.")
        self.dim = int(dim)
        if max_length is None:
            st = self.folder / "sentence_bert_config.json"
            try:
                max_length = int(json.loads(st.read_text(encoding="utf-8"))["max_seq_length"])
            except (OSError, ValueError, KeyError):
                max_length = min(int(tcfg.get("max_position_embeddings") or 512), 512)
        self.max_length = int(max_length)
        self.device = str(device)
        self.dtype = "float16" if self.device.startswith("cuda") else "float32"
        self.revision = revision
        self.warnings = list(warnings)
        self.tf_version = transformers_version()
        key = "|".join([source, revision, self.pooling, self.dtype, str(self.max_length),
                        "tf" + self.tf_version.split(".")[0]])
        self.model_key = hashlib.sha256(key.encode()).hexdigest()[:32]
        self.vectors = VectorCache(self.cache, self.model_key, self.dim)
        self.vector_dir = self.vectors.folder
        self._model = None
        self._tok = None
        self.threads = None     # CPU threads; None = device.cpu_threads(load_aware=True)
        self.last_threads = None   # the ThreadCount of the last model run (CPU), for the log
        self.loads = 0          # how many times the model was loaded (tests and timings)
        self.last_hits = 0
        self.last_misses = 0

    @property
    def info(self) -> dict:
        return {"source": self.source, "model_type": self.model_type, "dim": self.dim, "pooling": self.pooling,
                "revision": self.revision, "transformers": self.tf_version, "max_length": self.max_length,
                "dtype": self.dtype, "folder": str(self.folder), "cache_key": self.model_key,
                "warnings": list(self.warnings)}

    # -- model ---------------------------------------------------------------------------------
    def _load(self):
        """Load tokenizer + frozen backbone (monkeypatched in tests to prove cache hits skip it)."""
        offline_env()
        torch = require("torch", "torch")
        require("transformers", "transformers")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        tok = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if not self.is_encoder:
            tok.padding_side = "left"
        dtype = torch.float16 if self.dtype == "float16" else torch.float32
        model = AutoModel.from_pretrained(str(self.folder), local_files_only=True, dtype=dtype)
        model = model.to(self.device).eval()
        model.requires_grad_(False)
        self.loads += 1
        return tok, model

    def encode(self, texts, batch_size: int = 32, reporter=None, label: str = "") -> np.ndarray:
        """(len(texts), dim) float32; cached vectors are reused, only misses run the model.

        ``label`` (e.g. "Prompt4RE: encoding 812 distinct texts"): with a reporter, the progress text
        becomes "<label>: 320/812 encoded, about 2 min left" while the model runs."""
        texts = [str(t) for t in texts]
        vecs = self.vectors.get(texts)
        miss = sorted({t for t, v in zip(texts, vecs) if v is None})
        self.last_misses, self.last_hits = len(miss), len(texts) - sum(v is None for v in vecs)
        if miss:
            fresh = self._run_model(miss, batch_size, reporter, label)
            for t, v in zip(miss, fresh):
                self.vectors.put(t, v)
            lookup = dict(zip(miss, fresh))
            vecs = [lookup[t] if v is None else v for t, v in zip(texts, vecs)]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(vecs).astype(np.float32)

    def _run_model(self, texts, batch_size, reporter=None, label: str = "") -> list:
        if self._model is None:
            self._tok, self._model = self._load()
        import torch

        from ..device import cpu_threads, torch_threads

        tok, model = self._tok, self._model
        self.last_threads = cpu_threads(self.threads or 0, load_aware=True) if self.device == "cpu" else None
        with torch_threads(self.last_threads):
            return self._batches(texts, batch_size, reporter, torch, tok, model, label)

    def _batches(self, texts, batch_size, reporter, torch, tok, model, label=""):
        from ..progress import check_canceled

        # sort by length so padding stays small; results are put back in order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [None] * len(texts)
        eta = EtaText(label, [len(texts[i]) + 8 for i in order]) if label and reporter is not None else None
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                check_canceled(reporter)
                idx = order[s:s + batch_size]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                          return_tensors="pt").to(self.device)
                kw = {} if self.is_encoder else {"use_cache": False}
                h = model(**enc, **kw).last_hidden_state
                mask = enc["attention_mask"]
                if self.pooling == "mean":
                    m = mask.unsqueeze(-1).to(h.dtype)
                    v = (h * m).sum(1) / m.sum(1).clamp(min=1)
                else:
                    last = mask.shape[1] - 1 - mask.flip(1).to(torch.int64).argmax(1)
                    v = h[torch.arange(h.shape[0], device=h.device), last]
                v = v.float().cpu().numpy()
                for j, i in enumerate(idx):
                    out[i] = v[j]
                if reporter is not None:
                    done = min(s + batch_size, len(order))
                    reporter.set_progress(100.0 * done / len(order))
                    if eta is not None and eta.due(done):
                        reporter.set_text(eta.text(done))
        bad = [i for i, v in enumerate(out) if not np.isfinite(v).all()]
        if bad:
            raise ToptConfigError(f"The text encoder {self.source} produced NaN/inf vectors for {len(bad)} prompt(s); "
                                  "expected finite vectors; use DEVICE=cpu (fp32) or another TEXT_ENCODER.")
        return out
