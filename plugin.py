"""Plugin object: registers the Processing provider, nothing else.

``initProcessing`` is what ``qgis_process`` calls; the desktop calls ``initGui``.
The toolbox, the modeler and batch all see the provider once it is registered.
"""
from qgis.core import QgsApplication

from .processing_provider.provider import ToptProvider


class ToptPlugin:
    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802
        if self.provider is None:
            self.provider = ToptProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
