"""Progress protocol shared by the engine and its front doors.

The engine reports through a ``ProgressReporter`` and never prints. The QGIS
adapter maps it onto ``QgsProcessingFeedback``; the command line maps it onto
logging. ``StageReporter`` rescales a sub-task's 0-100 % into a slice of the
parent's range so each stage can report its own progress.
"""
from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from .errors import ToptCancelled

log = logging.getLogger("topt_core")


@runtime_checkable
class ProgressReporter(Protocol):
    def set_progress(self, percent: float) -> None: ...
    def set_text(self, text: str) -> None: ...
    def info(self, text: str) -> None: ...
    def warning(self, text: str) -> None: ...
    def is_canceled(self) -> bool: ...


class NullReporter:
    """Reporter that swallows progress and logs messages; never cancels."""

    def set_progress(self, percent: float) -> None:
        pass

    def set_text(self, text: str) -> None:
        log.debug(text)

    def info(self, text: str) -> None:
        log.info(text)

    def warning(self, text: str) -> None:
        log.warning(text)

    def is_canceled(self) -> bool:
        return False


class PrintReporter(NullReporter):
    """Reporter for the command line: messages to stderr, progress in tenths."""

    def __init__(self, stream=None):
        import sys

        self._stream = stream or sys.stderr
        self._last = -10.0

    def set_progress(self, percent: float) -> None:
        if percent >= self._last + 10 or percent >= 100:
            self._last = percent
            print(f"  {percent:5.1f} %", file=self._stream, flush=True)

    def set_text(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def info(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def warning(self, text: str) -> None:
        print(f"WARNING: {text}", file=self._stream, flush=True)


class StageReporter:
    """Maps a stage's 0-100 % onto [start, end] of a parent reporter."""

    def __init__(self, parent: ProgressReporter, start: float, end: float):
        self.parent, self.start, self.end = parent, float(start), float(end)

    def set_progress(self, percent: float) -> None:
        p = min(max(percent, 0.0), 100.0)
        self.parent.set_progress(self.start + (self.end - self.start) * p / 100.0)

    def set_text(self, text: str) -> None:
        self.parent.set_text(text)

    def info(self, text: str) -> None:
        self.parent.info(text)

    def warning(self, text: str) -> None:
        self.parent.warning(text)

    def is_canceled(self) -> bool:
        return self.parent.is_canceled()


def check_canceled(reporter: ProgressReporter | None) -> None:
    """Raise ``ToptCancelled`` if the user asked to stop."""
    if reporter is not None and reporter.is_canceled():
        raise ToptCancelled("Cancelled by the user; nothing was written.")


def ensure_reporter(reporter: ProgressReporter | None) -> ProgressReporter:
    return reporter if reporter is not None else NullReporter()


def eta_words(seconds: float) -> str:
    """'about 4 min', 'about 1.5 h', 'under a minute': the time left, in words, for progress texts."""
    if seconds < 60:
        return "under a minute"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
