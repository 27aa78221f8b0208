"""The project's own error types.

Every message a user can see follows one shape: what was wrong, what was
expected, and how to fix it. The QGIS adapter turns any ``ToptError`` into a
``QgsProcessingException`` carrying the same text.
"""


class ToptError(Exception):
    """Base class for every error the engine raises on purpose."""


class ToptDataError(ToptError):
    """The input data cannot be used as given (shape, values, geometry, ids)."""


class ToptConfigError(ToptError):
    """A configuration value is out of range or inconsistent."""


class ToptDependencyError(ToptError):
    """An optional dependency (torch, transformers, a model package) is missing."""


class ToptCheckpointError(ToptError):
    """A saved model folder is missing, incomplete, tampered with or incompatible."""


class ToptResourceError(ToptError):
    """The job would not fit in memory or on the chosen device."""


class ToptCancelled(ToptError):
    """The user cancelled; nothing partial may be written."""
