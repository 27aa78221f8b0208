"""Stage 2 (Prompt4RE): task prompts through a frozen language model + an inductive cross-attention head.

Public API::

    from topt_core.prompt import run_prompt4re, PromptResult, get_text_encoder, describe_regions, build_prompts, TASKS

Names are loaded lazily so that importing this package pulls neither torch nor transformers.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "run_prompt4re": "pipeline", "PromptResult": "pipeline", "check_inputs": "pipeline",
    "get_text_encoder": "text_sources", "TextEncoder": "text_encoder", "default_cache_dir": "text_cache",
    "describe_regions": "describe", "describe_facets": "describe",
    "build_prompts": "templates", "build_prompt_facets": "templates", "task_template": "templates", "TASKS": "templates",
    "fit_predict": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        mod = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
