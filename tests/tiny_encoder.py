"""Tiny *random* language models for tests: built from a config (nothing downloaded), used as ``dir:`` sources.

Their vectors are meaningless; they only exercise the encoder plumbing (tokenising, pooling,
padding, the vector cache, the head) fast. Built once per transformers major version into
``.cache/tiny-encoders/`` of the checkout (git-ignored) and reused by every test run.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("bert", "llama", "qwen2")
_CORPUS = ["Predict the crime count of this urban region, which has POIs such as bars and schools.",
           "Included POIs: 16 educational (2.9%), 31 commercial (5.6%), 558 in total.",
           "Land use: residential 40%, commercial 20%. Mobility: 1200 trips out, 900 trips in.",
           "The region covers 0.35 km2, its centroid is at x=585000 m, y=4511000 m; 5 neighbours."] * 5


def _tf_major() -> str:
    from importlib.metadata import version

    return version("transformers").split(".")[0]


def build(kind: str, out_dir: Path, seed: int = 0) -> Path:
    """A tiny random model + an in-process BPE tokenizer saved as a Hugging Face folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig, PreTrainedTokenizerFast,
                              Qwen2Config)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(_CORPUS, trainer=tr)
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
    if out_dir.exists():          # another test process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    return out_dir


def folder(kind: str = "bert") -> Path:
    """The tiny model folder of ``kind``, built on first use."""
    if kind not in KINDS:
        raise ValueError(f"tiny encoder kind must be one of {KINDS}, got {kind!r}")
    out = ROOT / ".cache" / "tiny-encoders" / f"tiny-random-{kind}-tf{_tf_major()}"
    if not (out / "config.json").is_file():
        build(kind, out)
    return out


def source(kind: str = "bert") -> str:
    """``dir:`` source string of the tiny model of ``kind`` (TEXT_ENCODER / --text-encoder / PromptConfig)."""
    return f"dir:{folder(kind)}"
