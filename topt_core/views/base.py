"""``View``: one kind of region data as a unit, and ``TableView`` for per-region tables.

A view brings everything the engine needs to know about it:

* where it lives in ``RegionData`` and how it is validated, subset and saved;
* stage 1: its node features (robust scaling, statistics fitted on the training data and
  stored with the model), its self-supervised target and loss;
* stage 2: its facet sentence in the region descriptions.

* the front doors: its inputs (``sources``, see ``inputs.py``): the QGIS parameters, CLI flags and
  help lines, the join kind and its own function from joined records to region rows.

Adding a table view (say road length per region) is one module with a ``TableView`` that declares
its ``sources``, and one line in ``topt_core/views/__init__.py``; its values travel in
``RegionData.tables``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ToptDataError
from . import scaling, words


@dataclass
class Table:
    """Values (N, K) and column names of a registry view stored in ``RegionData.tables``."""

    values: np.ndarray
    columns: list


class View:
    """Interface of a view. Subclasses set the class attributes and implement the methods."""

    name = ""                 # registry key, e.g. "poi"
    label = ""                # words for messages, e.g. "POI counts"
    kind = "table"            # "table" (N x K values) or "od" (sparse N x N flows)
    facet_rank = 60           # position of its sentence in a description (place = 40)
    ssl_decoders: tuple = ()  # names of its decoders on the embedding (self-supervised loss)
    derived = False           # True: computed from the regions and the other views (views/derived.py)
    default_weight = 1.0      # its self-supervised loss weight unless SrelConfig.view_weights says otherwise
    sources: tuple = ()       # the front doors' inputs: ``inputs.Source``s, one per way to give the view


    # -- storage -----------------------------------------------------------------------------
    def get(self, data):
        raise NotImplementedError

    def set(self, data, values, columns) -> None:
        """Store the view's values (and column names) on ``data`` (what a front door's join built)."""
        raise NotImplementedError

    def present(self, data) -> bool:
        value = self.get(data)
        if value is None:
            return False
        return (value.nnz if hasattr(value, "nnz") else np.count_nonzero(value)) > 0

    def validate(self, data, n: int) -> None:
        """Normalise dtypes in place or raise ``ToptDataError``."""

    def covered(self, data) -> np.ndarray:
        """(N,) bool: the regions that have any record of this view (an OD flow in or out, a POI, ...)."""
        value = self.get(data)
        if hasattr(value, "nnz"):
            m = abs(value.tocsr())
            return (np.asarray(m.sum(1)).ravel() + np.asarray(m.sum(0)).ravel()) > 0
        return np.any(np.asarray(value) != 0, axis=1)

    def warnings(self, data) -> list[str]:
        """What the user should know about this view before training (it covers few regions, teaches little)."""
        has = self.covered(data)
        if has.mean() < 0.5:
            return [f"{self.label} cover only {int(has.sum())} of {len(has)} regions ({100 * has.mean():.0f} %): the "
                    "others have no record of this view, so the model learns about them from the other views and "
                    "their surroundings only (regions without records add nothing to its self-supervised loss). Check "
                    "that the layer covers the study area, or expect its influence to be local."]
        return []

    def subset(self, data, rows, out) -> None:
        """Set this view on ``out`` (a copy of ``data``) restricted to ``rows``."""

    def to_arrays(self, data) -> tuple[dict, dict]:
        """(arrays for safetensors, JSON metadata) to store the view with a model."""
        return {}, {}

    def from_arrays(self, data, arrays: dict, meta: dict, n: int) -> None:
        """Inverse of ``to_arrays``: set the view on ``data``."""

    # -- stage 1 -------------------------------------------------------------------------------
    def schema(self, data) -> dict:
        """Entries of the model's input schema for this view (the column names the model uses)."""
        return {}

    def check(self, schema: dict, data) -> None:
        """Refuse data the model (``schema``) cannot read; nothing by default."""

    def feature_dim(self, data, config) -> int:
        raise NotImplementedError

    def fit_stats(self, data, config, geometry) -> dict:
        raise NotImplementedError

    def stat_shapes(self, dim: int, config) -> dict:
        raise NotImplementedError

    def features(self, data, stats: dict, config, geometry, schema: dict) -> np.ndarray:
        """(N, F) float32 node features, with the model's statistics and ``schema``."""
        raise NotImplementedError

    def loss_weight(self, config) -> float:
        """This view's weight in the self-supervised loss: ``config.view_weights`` if it names the view, else
        the config's ``<name>_weight`` field where one exists (the built-in views), else ``default_weight``."""
        named = dict(getattr(config, "view_weights", ()))
        if self.name in named:
            return float(named[self.name])
        return float(getattr(config, f"{self.name}_weight", self.default_weight))

    def ssl_target(self, data, stats: dict, config=None):
        """Its self-supervised target, mode-neutral (``topt_core/targets.py``); the attention mode builds
        the loss form from it (exact or sampled) and hands that to ``ssl_loss`` as ``target``."""
        raise NotImplementedError

    def ssl_loss(self, decoders, emb, target):
        """The loss: ``target`` (what the mode built from ``ssl_target``) of this view's decoded embeddings."""
        raise NotImplementedError

    # -- stage 2 -------------------------------------------------------------------------------
    def describe(self, data) -> list[str]:
        """One sentence per region."""
        raise NotImplementedError


class TableView(View):
    """A per-region table: counts (POIs, land use, road lengths) or numeric attributes.

    ``counts``: log1p of the columns and of the row total, plus (``linear_counts``) the columns and
    total themselves; similarity target = cosine of the counts. ``numeric``: signed log1p;
    similarity target = cosine of the robust z-scores (differently scaled fields weigh alike).
    Built-in views keep their ``RegionData`` attributes (``attr``/``columns_attr``); a new view
    leaves them None and lives in ``RegionData.tables[name]``.
    """

    counts = True             # False: signed numeric attributes
    attr = None               # RegionData attribute holding the (N, K) values (built-in views)
    columns_attr = None       # RegionData attribute holding the K column names
    column_prefix = None      # default column names "<prefix>_<j>"
    unit = "records"          # for "No <unit> recorded." (count views)
    facet_lead = ""           # first words of its description sentence (default: the label)
    columns_label = ""        # what its columns are called in messages (default: "<label> columns")

    @property
    def schema_key(self) -> str:
        return self.columns_attr or f"columns.{self.name}"

    @property
    def array_name(self) -> str:
        return self.attr or f"table.{self.name}"

    # -- storage -----------------------------------------------------------------------------
    def get(self, data):
        if self.attr:
            return getattr(data, self.attr)
        t = data.tables.get(self.name)
        return None if t is None else t.values

    def columns(self, data) -> list:
        if self.columns_attr:
            return list(getattr(data, self.columns_attr) or [])
        t = data.tables.get(self.name)
        return [] if t is None else list(t.columns)

    def set(self, data, values, columns) -> None:
        if self.attr:
            setattr(data, self.attr, values)
            setattr(data, self.columns_attr, list(columns))
        elif values is None:
            data.tables.pop(self.name, None)
        else:
            data.tables[self.name] = Table(values, list(columns))

    def validate(self, data, n: int) -> None:
        value = self.get(data)
        if value is None:
            return
        what = self.label
        a = np.asarray(value, dtype=float)
        if a.ndim != 2 or a.shape[0] != n:
            raise ToptDataError(f"{what} have shape {a.shape}; expected ({n}, K) with one row per region.")
        if not np.isfinite(a).all():
            if self.counts:
                raise ToptDataError(f"{what} contain NaN or infinite values; expected finite numbers >= 0.")
            raise ToptDataError(f"{what} contain NaN or infinite values; fill them (e.g. with 0) or leave "
                                "those fields out.")
        if self.counts and (a < 0).any():
            raise ToptDataError(f"{what} contain negative values; expected amounts >= 0.")
        names = [str(x) for x in self.columns(data)]
        if len(names) != a.shape[1]:
            names = [f"{self.column_prefix or self.name}_{i}" for i in range(a.shape[1])]
        self.set(data, a, names)

    def subset(self, data, rows, out) -> None:
        value = self.get(data)
        if value is not None:
            self.set(out, np.asarray(value)[rows], self.columns(data))

    def warnings(self, data) -> list[str]:
        x = np.asarray(self.get(data), dtype=float)
        used = [c for c, j in zip(self.columns(data), range(x.shape[1])) if np.any(x[:, j] != 0)]
        out = super().warnings(data)
        if self.counts and len(used) == 1:
            return out + [f"{self.label}: every region's values fall in one column ('{used[0]}'), so the mix of any two "
                    "regions is the same and its similarity loss teaches the model nothing (it reaches 0 at "
                    "once); only the totals carry information. Choose a field with several categories or "
                    "classes, or leave this input out."]
        return out

    def to_arrays(self, data):
        value = self.get(data)
        arrays = {} if value is None else {self.array_name: np.ascontiguousarray(value, dtype=np.float64)}
        return arrays, {self.schema_key: list(map(str, self.columns(data)))}

    def from_arrays(self, data, arrays, meta, n):
        self.set(data, arrays.get(self.array_name), meta.get(self.schema_key, []))

    # -- stage 1 -------------------------------------------------------------------------------
    def used_columns(self, data) -> list:
        """The columns with a non-zero value somewhere: what a model trained on ``data`` reads.

        A category that no region has (say a POI class absent from the city) is left out, so the
        same data gives the same model input whether it came with that empty column (arrays) or
        without it (a point layer cannot hold a category without points).
        """
        if self.get(data) is None:
            return []
        x = np.asarray(self.get(data), dtype=float)
        return [c for j, c in enumerate(self.columns(data)) if np.any(x[:, j] != 0)]

    def aligned(self, data, names) -> np.ndarray:
        """(N, len(names)) values of the named columns; a column the data lacks is all zero."""
        x = np.asarray(self.get(data), dtype=np.float64)
        pos = {c: j for j, c in enumerate(self.columns(data))}
        out = np.zeros((x.shape[0], len(names)))
        for k, name in enumerate(names):
            if name in pos:
                out[:, k] = x[:, pos[name]]
        return out

    def schema(self, data) -> dict:
        return {self.schema_key: self.used_columns(data)}

    def check(self, schema: dict, data) -> None:
        model = list(schema.get(self.schema_key, []))
        extra = [c for c in self.used_columns(data) if c not in model]
        if extra:
            what = self.columns_label or f"{self.label} columns"
            raise ToptDataError(f"The data's {what} {extra[:8]} are not among the model's {model[:8]}; use the same "
                                f"{what} (names) as for training, or retrain.")

    def raw(self, data, config, names=None) -> tuple[np.ndarray, np.ndarray]:
        """Columns before robust scaling (``names``: the model's columns), and each column's clip bound."""
        x = self.aligned(data, self.used_columns(data) if names is None else names)
        if not self.counts:
            return scaling.signed_log1p(x), np.full(x.shape[1], scaling.CLIP)
        x = np.concatenate([x, x.sum(1, keepdims=True)], axis=1)
        cols, clip = [np.log1p(x)], [np.full(x.shape[1], scaling.CLIP)]
        if config.linear_counts:
            cols.append(x)
            clip.append(np.full(x.shape[1], scaling.CLIP_LINEAR))
        return np.concatenate(cols, axis=1), np.concatenate(clip)

    def feature_dim(self, data, config) -> int:
        k = len(self.used_columns(data))
        if not self.counts:
            return k
        return (k + 1) * (2 if config.linear_counts else 1)

    def fit_stats(self, data, config, geometry) -> dict:
        c, s = scaling.robust_fit(self.raw(data, config)[0])
        return {f"{self.name}.center": c, f"{self.name}.scale": s}

    def stat_shapes(self, dim: int, config) -> dict:
        return {f"{self.name}.center": (dim,), f"{self.name}.scale": (dim,)}

    def features(self, data, stats, config, geometry, schema) -> np.ndarray:
        raw, clip = self.raw(data, config, schema[self.schema_key])
        return scaling.robust_apply(raw, stats[f"{self.name}.center"], stats[f"{self.name}.scale"], clip)

    @property
    def ssl_decoders(self):
        return (self.name,)

    def similarity_vectors(self, data) -> np.ndarray:
        """The vectors whose row cosine is the self-supervised similarity target."""
        x = np.asarray(self.get(data), dtype=np.float64)
        if self.counts:
            return x
        c, s = scaling.robust_fit(scaling.signed_log1p(x))
        return scaling.robust_apply(scaling.signed_log1p(x), c, s)

    def similarity_target(self, data) -> np.ndarray:
        return scaling.cosine_matrix(self.similarity_vectors(data))

    def ssl_target(self, data, stats, config=None):
        """The similarity target. Regions without any record of this view (a tract with no POI) have no
        mix to compare: their pairs are left out of the loss (``mask``) instead of teaching the model that
        they are unlike every region; with sparse real POIs (a quarter of tracts empty) those pairs would
        otherwise dominate it. A view that every region has keeps the unmasked form."""
        from ..targets import SimilarityTarget

        vec = self.similarity_vectors(data)
        has = np.linalg.norm(np.asarray(vec, dtype=np.float64), axis=1) > 0
        return SimilarityTarget(vec, None if has.all() or not has.any() else has)

    def ssl_loss(self, decoders, emb, target):
        return target(decoders[self.name](emb))

    # -- stage 2 -------------------------------------------------------------------------------
    def describe(self, data) -> list[str]:
        names, lead = self.columns(data), self.facet_lead or self.label
        k = np.asarray(self.get(data)).shape[1]
        if len(names) != k:
            names = [f"{self.column_prefix or self.name}_{j}" for j in range(k)]
        if self.counts:
            return words.composition(self.get(data), names, self.unit, lead)
        return words.attributes(self.get(data), names, lead)
