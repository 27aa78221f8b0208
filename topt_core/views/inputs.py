"""Front-door inputs of a view, declared once as data (``View.sources``).

A user view lists the ways a user can give it, one ``Source`` each: the join kind, its parameters
(``Param``: the QGIS parameter id, the CLI flag, the kind of input, the dialog label and the help
line) and the view's own function from the joined records to region rows (``build``). Both front
doors loop over the registry's sources: ``topt:train_regions`` adds one QGIS parameter per
``Param`` and ``processing_provider/adapters/spatial_join.py`` joins the layers; the CLI adds one
flag per ``Param`` and ``topt_core/io.py`` joins the files; the help texts take the lines from here.
A new view therefore needs no edit in either door.

Join kinds (what a door does before it calls ``build``; each ``Records`` field says who fills it):

* ``points``: a point layer. Every point (each part of a multipoint) is located in the region that
  contains it, the lowest region row when several do. ``index``: region row per point (-1: outside),
  ``values[role]``: the point's value of each field given.
* ``od``: an OD table of region ids (the ``origin`` and ``destination`` fields both set:
  ``values["origin"/"destination"]``) or OD lines (neither: first vertex -> ``index``, last ->
  ``dest``); ``values["weight"]`` when a count field is given.
* ``pieces``: a polygon layer intersected with the regions: one record per (polygon, region) piece
  of positive area (``index``, ``areas``), one with ``index`` -1 for a polygon outside every region;
  ``region_areas`` for shares.
* ``region_fields``: numeric fields of the region layer: ``columns`` (field name -> N values).

Messages about a parameter use the door's own name for it (``Records.names``, the ``name``
callables below): ``POI_CATEGORY_FIELD`` in QGIS, ``--poi-category`` on the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ToptDataError

JOINS = ("points", "od", "pieces", "region_fields")
KINDS = ("layer", "field", "fields")
GEOMETRIES = ("point", "line", "polygon", "any")


@dataclass(frozen=True)
class Param:
    """One front-door parameter of a view."""

    qgis: str                 # QGIS parameter id, e.g. "POI_CATEGORY_FIELD"
    cli: str                  # CLI flag, e.g. "--poi-category"; ``key`` (poi_category) is io.read_region_data's keyword
    kind: str                 # "layer", "field" (one field of the source's layer), "fields" (region fields)
    label: str                # the dialog's label
    help: str                 # the help panel's line, also the CLI's --help line
    role: str = ""            # what ``build`` reads it as (``Records.values[role]``); "" for the layer itself
    geometry: str = "any"     # layers: "point", "line", "polygon" or "any" (a table without geometry too)
    numeric: bool = False     # fields: only numeric fields are offered (and, for region fields, accepted)
    required: bool = False    # a field that must be set when its layer is
    holds: str = ""           # what a required field holds, for the "is set but ... is empty" message
    advanced: bool = False    # under 'Advanced parameters' in the dialog

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.qgis}: kind {self.kind!r} is not one of {KINDS}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"Param {self.qgis}: geometry {self.geometry!r} is not one of {GEOMETRIES}")
        if not self.cli.startswith("--"):
            raise ValueError(f"Param {self.qgis}: the CLI flag {self.cli!r} must start with '--'")

    @property
    def key(self) -> str:
        """The keyword of ``io.read_region_data`` and the CLI's ``dest``: the flag without dashes."""
        return self.cli[2:].replace("-", "_")

    @property
    def cli_help(self) -> str:
        return self.help + (" Comma-separated." if self.kind == "fields" else "")


@dataclass(frozen=True)
class Source:
    """One way to give a view: a join kind, its parameters (the first switches it on) and ``build``."""

    join: str                 # one of JOINS
    params: tuple             # Param, ...: the layer (or the region fields) first, then its fields
    build: Callable           # build(Records) -> Rows: the view's own counting / aggregation
    noun: str = "input"       # what a feature of the layer is, for messages ("3 POI feature(s) have no geometry")

    def __post_init__(self):
        if self.join not in JOINS:
            raise ValueError(f"Source: join {self.join!r} is not one of {JOINS}")
        first = self.params[0] if self.params else None
        want = "fields" if self.join == "region_fields" else "layer"
        if first is None or first.kind != want:
            raise ValueError(f"Source ({self.join}): the first parameter must be of kind {want!r}")

    @property
    def trigger(self) -> Param:
        return self.params[0]

    @property
    def fields(self) -> tuple:
        """The fields of the source's layer (every parameter after the layer)."""
        return self.params[1:]

    def param(self, role: str) -> Param | None:
        return next((p for p in self.fields if p.role == role), None)


@dataclass
class Records:
    """What a door hands ``Source.build`` after its join (see the module docstring per join kind)."""

    n: int                                       # number of regions
    region_ids: np.ndarray                       # (N,) canonical id strings
    id_field: str = ""                           # the field the ids came from (messages)
    names: dict = field(default_factory=dict)    # role (or "layer"/"fields") -> the door's name of that parameter
    index: np.ndarray | None = None              # points, pieces, OD lines (origin): region row per record, -1 outside
    dest: np.ndarray | None = None               # OD lines: region row of the last vertex
    values: dict = field(default_factory=dict)   # role -> per-record values of the fields given
    areas: np.ndarray | None = None              # pieces: area of each piece (the regions' CRS units)
    region_areas: np.ndarray | None = None       # pieces: area of each region (same units)
    columns: dict = field(default_factory=dict)  # region_fields: field name -> (N,) values
    features: int = 0                            # features read from the layer


@dataclass
class Rows:
    """What ``build`` returns: the view's region rows and what the user should read about them."""

    values: object                               # (N, K) array, or an (N, N) sparse matrix (OD)
    columns: list = field(default_factory=list)  # K column names (empty for OD)
    texts: dict = field(default_factory=dict)    # label -> (N,) strings for stage 2's descriptions
    warnings: list = field(default_factory=list)
    infos: list = field(default_factory=list)


def records(src: Source, name: Callable[[Param], str], **kw) -> Records:
    """``Records`` for ``src`` with ``names`` filled in the door's words (``name(param)``)."""
    names = {p.role or ("fields" if p.kind == "fields" else "layer"): name(p) for p in src.params}
    return Records(names=names, **kw)


def user_views() -> list:
    """The registry's views that take front-door inputs, in registry order (read at call time)."""
    from . import REGISTRY

    return [v for v in REGISTRY if not v.derived and getattr(v, "sources", ())]


def params() -> list[Param]:
    """Every view's front-door parameters, in registry order (what the QGIS dialog and the CLI add)."""
    out, seen = [], {}
    for view in user_views():
        for src in view.sources:
            for p in src.params:
                for attr in ("qgis", "cli"):
                    other = seen.get((attr, getattr(p, attr)))
                    if other is not None:
                        raise ValueError(f"view {view.name!r}: the {attr} name {getattr(p, attr)!r} is already used "
                                         f"by view {other!r}; give each parameter its own name")
                    seen[(attr, getattr(p, attr))] = view.name
                out.append(p)
    return out


def chosen(view, given: Callable[[Param], bool], name: Callable[[Param], str]):
    """The source of ``view`` the user gave (None: none), after the checks every door makes alike.

    ``given(param)``: is the parameter set; ``name(param)``: the door's name for it.
    """
    on = [s for s in view.sources if given(s.trigger)]
    if len(on) > 1:
        named = " and ".join(name(s.trigger) for s in on)
        raise ToptDataError(f"Both {named} are set; expected one source of {view.label}. Choose one of them.")
    if not on:
        return None
    src = on[0]
    for p in src.fields:
        if p.required and not given(p):
            raise ToptDataError(f"{name(src.trigger)} is set but {name(p)} is empty; choose the field that holds "
                                f"{p.holds or 'the values'}.")
    if src.join == "od":
        o, d = src.param("origin"), src.param("destination")
        if given(o) != given(d):
            raise ToptDataError(f"Set both {name(o)} and {name(d)} (an OD table of region ids), or neither (OD "
                                "lines: first and last vertex).")
    return src


def od_by_ids(src: Source, given: Callable[[Param], bool]) -> bool:
    """An ``od`` source given as a table of region ids (both id fields set), not as lines."""
    return given(src.param("origin"))


def no_lines(src: Source, name: Callable[[Param], str]) -> str:
    """The refusal for an ``od`` layer given as lines that holds none."""
    return (f"The {name(src.trigger)} layer has no lines; expected OD lines (one line per trip or flow, first "
            f"vertex = origin) or a table with {name(src.param('origin'))} and {name(src.param('destination'))} set.")


def not_numeric(param_name: str, field_name: str, type_name: str) -> str:
    """The refusal for a region field of a numeric input that is not numeric (both doors)."""
    return (f"{param_name}: the field '{field_name}' is of type {type_name}; expected numeric fields. Choose "
            "numeric fields (or convert it with the Field Calculator).")


def no_geometry(count: int, src: Source) -> str:
    return f"{count} {src.noun} feature(s) have no geometry; they were left out."


def in_several(count: int, src: Source) -> str:
    return (f"{count} {src.noun} point(s) lie in more than one region (overlapping polygons or on a shared edge); "
            "each was counted once, in the first region.")


def report(rep) -> list[str]:
    """A ``joins.ViewReport``'s messages (what a view's counting left out), as ``Rows.warnings``."""
    return list(rep.messages()) if rep is not None else []


def apply(view, data, rows: Rows) -> None:
    """Put a view's rows on ``data`` (``RegionData``)."""
    view.set(data, rows.values, rows.columns)
    data.texts.update(rows.texts)
