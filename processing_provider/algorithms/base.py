"""``ToptAlgorithm``: what every topt algorithm shares.

Dependency check (the provider loads without torch; an algorithm then refuses
with the exact install command), help text from ``processing_provider/help_texts.py``,
and one error bridge: ``ToptError`` -> ``QgsProcessingException`` with the same
message, cancel -> exception with nothing written, anything else -> the
traceback in the log plus a short exception.
"""
import html
import importlib.util
import os
import tempfile
import traceback

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterVectorDestination, QgsProcessingParameterVectorLayer)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ICON = os.path.join(PLUGIN_DIR, "resources", "icons", "topt.svg")

# (import name, pip name) of what the algorithms need at run time
RUNTIME_DEPS = {
    "torch": "torch",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "safetensors": "safetensors",
}


from topt_core.device import DEVICE_CHOICES as DEVICES  # noqa: E402,F401  (the DEVICE options, re-exported)


def _is_index(value) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.strip().isdigit())


class ToptEnumParameter(QgsProcessingParameterEnum):
    """An enum that stores option names (models and batch files hold names) and also accepts an option's
    number, as ``qgis_process help`` offers ("Number of selected option, e.g. '1'"), everywhere."""

    def __init__(self, name, desc, options, default):
        super().__init__(name, desc, options=list(options), allowMultiple=False, defaultValue=default,
                         usesStaticStrings=True)

    def clone(self):
        c = ToptEnumParameter(self.name(), self.description(), self.options(), self.defaultValue())
        c.setFlags(self.flags())
        c.setHelp(self.help())
        return c

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802
        if _is_index(value):
            return 0 <= int(value) < len(self.options())
        return super().checkValueIsAcceptable(value, context)


def enum_param(name, desc, options, default, advanced=False):
    """An enum parameter that stores its option strings and accepts their numbers (``ToptEnumParameter``)."""
    p = ToptEnumParameter(name, desc, options, default)
    return _flag_advanced(p) if advanced else p


def _flag_advanced(p):
    p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return p


def advanced(p):
    """Flag a parameter as advanced (hidden under 'Advanced parameters' in the dialog)."""
    return _flag_advanced(p)


def add_view_parameters(alg, regions_param):
    """One QGIS parameter per front-door input of every registered view (``topt_core.views.inputs``), in
    registry order: layers as feature sources, their fields with the layer as parent, region fields with
    ``regions_param`` as parent. A view added to the registry appears here without any edit."""
    from qgis.core import QgsProcessing, QgsProcessingParameterFeatureSource, QgsProcessingParameterField

    from topt_core.views.inputs import user_views

    F = QgsProcessingParameterField
    types = {"point": QgsProcessing.TypeVectorPoint, "line": QgsProcessing.TypeVectorLine,
             "polygon": QgsProcessing.TypeVectorPolygon, "any": QgsProcessing.TypeVector}
    for view in user_views():
        for src in view.sources:
            parent = regions_param if src.join == "region_fields" else src.trigger.qgis
            for p in src.params:
                if p.kind == "layer":
                    d = QgsProcessingParameterFeatureSource(p.qgis, alg.tr(p.label), [types[p.geometry]], optional=True)
                else:
                    d = F(p.qgis, alg.tr(p.label), parentLayerParameterName=parent,
                          type=F.Numeric if p.numeric else F.Any, allowMultiple=p.kind == "fields", optional=True)
                if not alg.addParameter(_flag_advanced(d) if p.advanced else d):
                    raise ValueError(f"view {view.name!r}: its parameter {p.qgis} clashes with another parameter "
                                     f"of {alg.name()}; give it another name")


def view_values(alg, parameters, context) -> dict:
    """The registered views' parameters as given: QGIS id -> feature source (or None), field name or fields."""
    from topt_core.views.inputs import params

    out = {}
    for p in params():
        if p.kind == "layer":
            out[p.qgis] = alg.parameterAsSource(parameters, p.qgis, context)
        elif p.kind == "fields":
            out[p.qgis] = alg.parameterAsFields(parameters, p.qgis, context)
        else:
            out[p.qgis] = alg.parameterAsString(parameters, p.qgis, context)
    return out


def missing_dependencies(names=None):
    """Names (pip spelling) of required packages that cannot be imported."""
    deps = RUNTIME_DEPS if names is None else {k: RUNTIME_DEPS.get(k, k) for k in names}
    return [pip for mod, pip in deps.items() if importlib.util.find_spec(mod) is None]


def install_hint(missing, platform=None, externally_managed=None, profile_python=None):
    """The install command that works for the Python QGIS runs, per platform.

    Debian/Ubuntu's Python is externally managed (PEP 668: a plain ``pip install`` is refused), so the
    packages go into the profile's ``python`` folder, which QGIS puts on ``sys.path``.
    """
    import sys
    import sysconfig

    platform = platform or sys.platform
    pkgs = " ".join("torch==2.13.0" if m == "torch" else m for m in missing)
    cpu = " --extra-index-url https://download.pytorch.org/whl/cpu" if "torch" in missing else ""
    if platform.startswith("win"):
        return (f"open the OSGeo4W Shell (Start menu) and run: python -m pip install {pkgs}{cpu}; then restart "
                "QGIS")
    if platform == "darwin":
        return (f"in a Terminal run: /Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install --user {pkgs}"
                f"{cpu}; then restart QGIS")
    if externally_managed is None:
        externally_managed = os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED"))
    if not externally_managed:
        return f"run: {sys.executable or 'python3'} -m pip install --user {pkgs}{cpu}; then restart QGIS"
    if profile_python is None:
        try:
            from qgis.core import QgsApplication

            profile_python = os.path.join(QgsApplication.qgisSettingsDirPath(), "python")
        except Exception:
            profile_python = "~/.local/share/QGIS/QGIS3/profiles/default/python"
    return (f"this Python is managed by the system (PEP 668), so install into the QGIS profile's python folder: "
            f"python3 -m pip install --target \"{profile_python}\" \"numpy<2\" {pkgs}{cpu}; then restart QGIS "
            "(from a checkout of the plugin, 'make setup' builds a venv with everything instead)")


def local_path(value):
    """The file-system path behind a layer/destination string, or None (memory:, databases, services)."""
    if not value:
        return None
    s = str(value)
    if s.startswith("ogr:") or s.lower().startswith(("memory:", "postgres", "postgis", "dbname=", "mssql",
                                                      "oracle", "spatialite:", "http:", "https:", "/vsi")):
        return None
    s = s.split("|", 1)[0]
    if s.startswith("file://"):
        s = s[len("file://"):]
    return os.path.abspath(os.path.expanduser(s))


def _nearest_existing(path):
    p = os.path.dirname(path)
    while p and not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _probe_writable(folder):
    """Really try to create a file in ``folder`` (os.access is True for root even on read-only mounts)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".topt-write-test-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


class ToptAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses define name(), displayName(), initAlgorithm(), run().

    ``run(parameters, context, feedback)`` is the subclasses' hook, but ``QgsProcessingAlgorithm.run``
    is also the public entry point that ``processing.run`` calls with five arguments; a Python method
    of that name would shadow it and break ``processing.run`` (TypeError). So a subclass's ``run`` is
    moved to ``execute`` when the class is created, leaving the C++ ``run`` visible.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        hook = cls.__dict__.get("run")
        if hook is not None:
            cls.execute = hook
            delattr(cls, "run")

    #: import names this algorithm needs (keys of RUNTIME_DEPS or pip-named modules)
    dependencies = tuple(RUNTIME_DEPS)

    def tr(self, text):
        return QCoreApplication.translate("topt", text)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def group(self):
        return self.tr("Region embeddings")

    def groupId(self):  # noqa: N802
        return "region_embeddings"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802
        return ICON

    def shortHelpString(self):  # noqa: N802
        """A paragraph, then each parameter under the label the dialog shows (help_texts.py; the views'
        inputs from their declarations), in the dialog's order: basic parameters, then advanced."""
        from ..help_texts import parameter_help

        intro, params = parameter_help(self.name())
        intro = intro or self.shortDescription() or ""
        defs = [p for p in self.parameterDefinitions() if p.name() in params]
        is_adv = lambda p: bool(p.flags() & QgsProcessingParameterDefinition.FlagAdvanced)  # noqa: E731
        lines = [f"<dt><b>{html.escape(p.description())}</b></dt><dd>{html.escape(params[p.name()])}</dd>"
                 for p in sorted(defs, key=is_adv)]
        lines += [f"<dt><b>{html.escape(name)}</b></dt><dd>{html.escape(text)}</dd>"      # a line without parameter
                  for name, text in params.items() if self.parameterDefinition(name) is None]
        return f"<p>{html.escape(intro)}</p><dl>{''.join(lines)}</dl>"

    def helpUrl(self):  # noqa: N802
        """The README shipped inside the plugin folder (opens in the browser)."""
        from qgis.PyQt.QtCore import QUrl

        return QUrl.fromLocalFile(os.path.join(PLUGIN_DIR, "README.md")).toString()

    def parameterAsEnumString(self, parameters, name, context):  # noqa: N802
        """As QGIS, and a number means that option of the list (qgis_process's help offers numbers)."""
        p = self.parameterDefinition(name)
        value = parameters.get(name) if isinstance(parameters, dict) else None
        if isinstance(p, QgsProcessingParameterEnum) and _is_index(value):
            return p.options()[int(value)]
        return super().parameterAsEnumString(parameters, name, context)

    def canExecute(self):  # noqa: N802
        missing = missing_dependencies(self.dependencies)
        if missing:
            return False, self.tr(f"Missing Python packages: {', '.join(missing)}; {install_hint(missing)}.")
        return True, ""

    def destination_paths(self, parameters, context):
        """[(parameter name, local path, kind)] of every output that goes to a file or folder."""
        out = []
        for p in self.destinationParameterDefinitions():
            name = p.name()
            if name not in parameters or parameters[name] is None:
                continue
            if isinstance(p, QgsProcessingParameterFolderDestination):
                path, kind = self.parameterAsFileOutput(parameters, name, context), "folder"
            elif isinstance(p, QgsProcessingParameterFileDestination):
                path, kind = self.parameterAsFileOutput(parameters, name, context), "file"
            elif isinstance(p, (QgsProcessingParameterFeatureSink, QgsProcessingParameterVectorDestination)):
                path, kind = self.parameterAsOutputLayer(parameters, name, context), "layer"
            else:
                continue
            path = local_path(path)
            if path:
                out.append((name, path, kind))
        return out

    def input_paths(self, parameters, context):
        """[(parameter name, local path)] of the input layers and folders (never to be overwritten)."""
        out = []
        for p in self.parameterDefinitions():
            name = p.name()
            if name not in parameters or parameters[name] is None:
                continue
            path = None
            if isinstance(p, (QgsProcessingParameterFeatureSource, QgsProcessingParameterVectorLayer)):
                layer = self.parameterAsVectorLayer(parameters, name, context)
                if layer is not None and layer.providerType() == "ogr":
                    path = local_path(layer.source())
            elif isinstance(p, QgsProcessingParameterFile):
                path = local_path(self.parameterAsFile(parameters, name, context))
            if path and os.path.exists(path):
                out.append((name, path))
        return out

    def check_destinations(self, parameters, context):
        """Refuse, before any work, outputs that cannot be written or would overwrite an input."""
        dests = self.destination_paths(parameters, context)
        inputs = self.input_paths(parameters, context)
        seen = {}
        for name, path, kind in dests:
            real = os.path.realpath(path)
            for in_name, in_path in inputs:
                if os.path.realpath(in_path) == real:
                    raise QgsProcessingException(self.tr(
                        f"{name} ({path}) is the same file as the input {in_name}; writing it would destroy the "
                        "input. Choose a different output path."))
            if real in seen:
                raise QgsProcessingException(self.tr(
                    f"{name} and {seen[real]} are the same path ({path}); expected a separate path for each "
                    "output. Choose different output paths."))
            seen[real] = name
            if kind == "folder" and os.path.isfile(path):
                raise QgsProcessingException(self.tr(
                    f"{name} ({path}) is an existing file; expected a folder. Choose a new folder name."))
            if kind != "folder" and os.path.isdir(path):
                raise QgsProcessingException(self.tr(
                    f"{name} ({path}) is an existing folder; expected a file path (e.g. {path}.gpkg). "
                    "Choose a file name."))
            anchor = _nearest_existing(path)
            if anchor and not os.path.isdir(anchor):
                raise QgsProcessingException(self.tr(
                    f"{name} ({path}) cannot be created: {anchor} is a file, not a folder; expected an "
                    "output inside a folder. Choose another output path."))
            why = _probe_writable(anchor) if anchor else None
            if why:
                raise QgsProcessingException(self.tr(
                    f"{name} ({path}) cannot be written: the folder {anchor} is not writable ({why}); "
                    "expected a writable folder. Choose another output path."))

    def parameterAsSink(self, parameters, name, context, *args, **kwargs):  # noqa: N802
        """As QGIS, but a missing output folder is created first (OGR cannot create 'new/folder/out.gpkg').

        Called only once all computation is done, so a failed run leaves no new folder behind."""
        path = local_path(self.parameterAsOutputLayer(parameters, name, context))
        if path:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            except OSError as exc:
                raise QgsProcessingException(self.tr(
                    f"{name}: cannot create the folder {os.path.dirname(path)} ({exc.strerror}); expected a "
                    "writable folder. Choose another output path.")) from None
        return super().parameterAsSink(parameters, name, context, *args, **kwargs)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ok, why = self.canExecute()
        if not ok:
            raise QgsProcessingException(why)
        self.check_destinations(parameters, context)
        from topt_core.errors import ToptCancelled, ToptError

        from ..feedback import FeedbackReporter
        from ..native_blas import warning as blas_warning
        slow_blas = blas_warning()
        if slow_blas:
            FeedbackReporter(feedback).warning(self.tr(slow_blas))

        try:
            return self.execute(parameters, context, feedback)
        except QgsProcessingException:
            raise
        except ToptCancelled as exc:
            raise QgsProcessingException(self.tr(f"{exc}")) from None
        except ToptError as exc:
            raise QgsProcessingException(self.tr(str(exc))) from None
        except MemoryError:
            raise QgsProcessingException(self.tr(
                "Out of memory. Use fewer regions, a smaller embedding size, or a machine with more memory."))
        except Exception as exc:  # unexpected: keep the traceback in the log, short message to the user
            feedback.reportError(traceback.format_exc())
            raise QgsProcessingException(self.tr(
                f"Unexpected error in topt ({type(exc).__name__}: {exc}); the full traceback is in the log. "
                "Please report it with the log attached.")) from None

    def execute(self, parameters, context, feedback):
        raise NotImplementedError

    def wants(self, parameters, name) -> bool:
        """An optional output the user asked for (given and not skipped)."""
        value = parameters.get(name)
        return value is not None and str(getattr(value, "sink", value)) not in ("", "None", "QVariant()")
