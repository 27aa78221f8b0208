"""``ToptAlgorithm``: what every topt algorithm shares.

Dependency check (the provider loads without torch; an algorithm then refuses
with the exact install command), help text from ``resources/help/<name>.html``,
and one error bridge: ``ToptError`` -> ``QgsProcessingException`` with the same
message, cancel -> exception with nothing written, anything else -> the
traceback in the log plus a short exception.
"""
import importlib.util
import os
import traceback

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELP_DIR = os.path.join(PLUGIN_DIR, "resources", "help")
ICON = os.path.join(PLUGIN_DIR, "resources", "icons", "topt.svg")

# (import name, pip name) of what the algorithms need at run time
RUNTIME_DEPS = {
    "torch": "torch",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "safetensors": "safetensors",
}


def missing_dependencies(names=None):
    """Names (pip spelling) of required packages that cannot be imported."""
    deps = RUNTIME_DEPS if names is None else {k: RUNTIME_DEPS.get(k, k) for k in names}
    return [pip for mod, pip in deps.items() if importlib.util.find_spec(mod) is None]


def install_hint(missing):
    return ("install them into QGIS's Python with: python3 -m pip install " + " ".join(missing)
            + " (for a CPU-only torch add --index-url https://download.pytorch.org/whl/cpu; "
            "from a checkout, 'make setup' installs everything)")


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

    #: import names this algorithm needs beyond the defaults
    extra_dependencies = ()

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
        path = os.path.join(HELP_DIR, f"{self.name()}.html")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        return self.shortDescription() or ""

    def helpUrl(self):  # noqa: N802
        return "https://github.com/topt-qgis/topt#readme"

    def canExecute(self):  # noqa: N802
        missing = missing_dependencies(tuple(RUNTIME_DEPS) + tuple(self.extra_dependencies))
        if missing:
            return False, self.tr(f"Missing Python packages: {', '.join(missing)}; {install_hint(missing)}.")
        return True, ""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ok, why = self.canExecute()
        if not ok:
            raise QgsProcessingException(why)
        from topt_core.errors import ToptCancelled, ToptError

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
