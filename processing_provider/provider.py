"""``ToptProvider`` (id ``topt``): loads the algorithms; always loads, even without torch."""
import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import all_algorithms

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icons", "topt.svg")


class ToptProvider(QgsProcessingProvider):
    def id(self):
        return "topt"

    def name(self):
        return "ToPT region embeddings"

    def longName(self):  # noqa: N802
        from topt_core import __version__

        return f"ToPT region embeddings {__version__}"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):  # noqa: N802
        return ICON

    def loadAlgorithms(self):  # noqa: N802
        for alg in all_algorithms():
            self.addAlgorithm(alg)
