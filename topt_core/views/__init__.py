"""The view registry: every kind of region data the engine understands, one module each.

``REGISTRY`` lists the views in a fixed order (it fixes the order of encoders, losses and
saved statistics). Each entry is a ``View`` (see ``base.py``): its front-door inputs (``sources``,
``inputs.py``), storage in ``RegionData``, validation, node features and their statistics, the
self-supervised target and loss, and the description facet. To add a per-region table (e.g. road
length per region)::

    # topt_core/views/roads.py
    from .base import TableView
    from .extra import region_fields
    from .inputs import Param, Source

    class RoadView(TableView):
        name, label, unit, facet_lead = "roads", "Road lengths", "road metres", "Roads"
        sources = (Source("region_fields", (
            Param("ROAD_FIELDS", "--road-fields", "fields", "Road length fields",
                  "Numeric region fields holding the metres of road of each class.", numeric=True),),
            region_fields),)

    VIEW = RoadView()

    # and here:  REGISTRY = (..., extra.VIEW, roads.VIEW, derived.GEOMETRY, derived.CONTEXT)

Both front doors then take ``ROAD_FIELDS`` / ``--road-fields`` and the values travel as
``RegionData.tables["roads"] = Table(values, columns)`` (``tests/toy_view.py`` is this module).
"""
from __future__ import annotations

from . import derived, extra, landuse, mobility, poi
from .base import Table, TableView, View

# the user's views first, then the derived ones (computed from the regions and those views; derived.py)
REGISTRY: tuple = (poi.VIEW, landuse.VIEW, mobility.VIEW, extra.VIEW, derived.GEOMETRY, derived.CONTEXT)

__all__ = ["REGISTRY", "Table", "TableView", "View", "check_weights", "get", "model_inputs", "names", "present"]


def names() -> list[str]:
    return [v.name for v in REGISTRY]


def get(name: str) -> View:
    for v in REGISTRY:
        if v.name == name:
            return v
    raise KeyError(f"unknown view {name!r}; known: {names()}")


def present(data) -> list[View]:
    """The user's views present in ``data`` (and not all zero), in registry order (no derived view)."""
    return [v for v in REGISTRY if not v.derived and v.present(data)]


def model_inputs(data, config) -> list[View]:
    """What a stage-1 model trained on ``data`` with ``config`` reads: the user's views, then the
    derived views that ``config`` switches on and that have something to say."""
    return present(data) + [v for v in REGISTRY if v.derived and v.enabled(config, data) and v.present(data)]


def derived_note(data, config) -> str:
    """One line for the log: which derived views a model trained on ``data`` reads, and why."""
    from .derived import CONTEXT

    used = [v.label.lower() for v in REGISTRY if v.derived and v.enabled(config, data) and v.present(data)]
    note = f"Derived views: {', '.join(used) if used else 'none'}"
    if "auto" in (getattr(config, "context_view", None), getattr(config, "geometry_view", None)):
        note += f" (auto: {CONTEXT.why(data)})"
    return note + "."


def check_weights(config) -> None:
    """Refuse ``SrelConfig.view_weights`` that name no registered view (a typo would silently weigh nothing)."""
    from ..errors import ToptConfigError

    unknown = [k for k, _ in getattr(config, "view_weights", ()) if k not in names()]
    if unknown:
        raise ToptConfigError(f"View weights name {', '.join(map(repr, unknown))}, which is not a view; expected "
                              f"names from {names()}.")
