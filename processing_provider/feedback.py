"""Bridge from topt_core's ``ProgressReporter`` protocol to ``QgsProcessingFeedback``."""
from qgis.core import QgsProcessingFeedback


class FeedbackReporter:
    """Implements topt_core.progress.ProgressReporter on top of a QGIS feedback."""

    def __init__(self, feedback: QgsProcessingFeedback):
        self.feedback = feedback or QgsProcessingFeedback()

    def set_progress(self, percent: float) -> None:
        self.feedback.setProgress(float(percent))

    def set_text(self, text: str) -> None:
        self.feedback.setProgressText(text)

    def info(self, text: str) -> None:
        self.feedback.pushInfo(text)

    def warning(self, text: str) -> None:
        # pushWarning exists from QGIS 3.20; keep a fallback for older builds
        push = getattr(self.feedback, "pushWarning", None) or self.feedback.reportError
        push(text)

    def is_canceled(self) -> bool:
        return self.feedback.isCanceled()
