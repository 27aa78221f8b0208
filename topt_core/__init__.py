"""ToPT engine: region data, SREL embeddings, Prompt4RE predictions.

Importable without torch (torch is imported lazily inside the modules that
train), and never imports qgis, PyQt or osgeo: the QGIS provider and the
command line (`python -m topt_core`) are two front doors onto the same code.
"""

__version__ = "0.1.0"
