"""Task templates: a short expert instruction that conditions the frozen language model.

The official Prompt4RE templates are long chain-of-thought persona prompts for a 7-11 B
multimodal LLM. Ours are kept short (about 30 tokens), because the default encoders are
small (MiniLM 22 M, SmolLM2 135 M) and truncate at 256-512 tokens, and the region
description has to fit after the template.

``build_prompts`` gives the full prompt per region (template + description). The head
uses several texts per region (``build_prompt_facets``): the template alone, the template
+ the full description, and each facet sentence (POI, land use, mobility, place, extra).
Facet sentences carry no template (``FACETS_WITH_TEMPLATE = False``): they are then the same
for every task, so their vectors are encoded once and reused from the cache by every task,
and the first encoding is about 30 % shorter. The task reaches the head through the template
key and the full prompt. ``use_task_template=False`` drops the template (ablation): the texts
are then the description and the facet sentences alone.

``build_user_prompts`` gives what the text route encodes by default (``PromptConfig.text_input``
"auto"): the user's own words per region (``describe.user_sentences``), without the template
(``USER_TEXT_WITH_TEMPLATE = False``), so they are short (a tenth of a full prompt's tokens on the
Manhattan sample), shared by regions with the same words (encoded once) and by every task (cached
once for all tasks).
"""
from __future__ import annotations

from ..data import RegionData
from ..errors import ToptConfigError
from .describe import describe_facets, user_sentences

TASKS = {
    "crime": ("You are an expert in urban criminology. Estimate how many crimes are reported in this urban "
              "region, considering nightlife, retail, transit hubs, crowds and residential density."),
    "checkin": ("You are an expert in urban social media behaviour. Estimate how many location check-ins "
                "visitors make in this urban region, considering attractions, restaurants, shops and footfall."),
    "service": ("You are an expert in city infrastructure and public services. Estimate how many 311 "
                "service requests residents file in this urban region, considering housing, noise, streets "
                "and population."),
    "generic": "You are an expert urban analyst. Estimate the {target} of this urban region. {description}",
}
ALIASES = {"checkIn": "checkin", "check-in": "checkin", "check_in": "checkin", "serviceCall": "service",
           "service_call": "service", "311": "service"}


def task_template(task: str, target_name: str = "", task_description: str = "") -> str:
    key = ALIASES.get(task, task)
    if key not in TASKS:
        raise ToptConfigError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}.")
    if key == "generic":
        target = (target_name or "target value").strip()
        desc = (task_description or "").strip()
        return TASKS["generic"].format(target=target, description=desc).strip()
    text = TASKS[key]
    if task_description.strip():
        text += " " + task_description.strip()
    return text


FACETS_WITH_TEMPLATE = False


def build_prompt_facets(data: RegionData, task: str, target_name: str = "", task_description: str = "",
                        use_task_template: bool = True) -> tuple[list[str], list[list[str]]]:
    """(facet names, per-region list of texts). Texts per region, in order:
    [template], template + full description, each facet sentence (template omitted in the ablation)."""
    facets = describe_facets(data)
    order = list(facets)
    tmpl = task_template(task, target_name, task_description) if use_task_template else ""
    names = (["task"] if use_task_template else []) + ["full"] + order
    out = []
    for i in range(data.n):
        full = " ".join(facets[f][i] for f in order)
        texts = [tmpl] if use_task_template else []
        texts.append(_join(tmpl, full))
        texts += [_join(tmpl if FACETS_WITH_TEMPLATE else "", facets[f][i]) for f in order]
        out.append(texts)
    return names, out


def _join(tmpl: str, text: str) -> str:
    return f"{tmpl}\nRegion: {text}" if tmpl else text


def build_prompts(data: RegionData, task: str, target_name: str = "", task_description: str = "",
                  use_task_template: bool = True) -> list[str]:
    """The full prompt per region: task template + the region description."""
    names, texts = build_prompt_facets(data, task, target_name, task_description, use_task_template)
    k = names.index("full")
    return [t[k] for t in texts]


USER_TEXT_WITH_TEMPLATE = False


def build_user_prompts(data: RegionData, task: str, target_name: str = "", task_description: str = "",
                       use_task_template: bool = True) -> list[str]:
    """The user's words per region, the text the text route reads under ``text_input="auto"``."""
    words = user_sentences(data)
    if not (USER_TEXT_WITH_TEMPLATE and use_task_template):
        return words
    tmpl = task_template(task, target_name, task_description)
    return [_join(tmpl, w) for w in words]
