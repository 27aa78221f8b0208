"""Hostile-input matrix (issue 6): helpers to build tiny, deliberately broken inputs.

Every case runs the way a user would (``processing.run("topt:...")``) and must end in a
correct result (maybe with a warning) or a ``QgsProcessingException`` whose message says
what was wrong, what was expected and how to fix it -- never a traceback, a half-written
output or a modified input.
"""
from __future__ import annotations

import hashlib
import re
import os
from pathlib import Path

import pytest
from tests.tiny_encoder import source as tiny_source

TINY_TRAIN = {"EPOCHS": 2, "EMBED_DIM": 8, "HIDDEN_DIM": 8, "LAYERS": 1, "HEADS": 2, "DEVICE": "cpu",
              "SEED": 7, "THREADS": 1}
TINY_PREDICT = {"TEXT_ENCODER": tiny_source("bert"), "EPOCHS": 2, "FOLDS": 2, "DEVICE": "cpu", "SEED": 3}
# a polygon grid in Manhattan (lon/lat), cells ~ 0.002 deg
LON0, LAT0, STEP = -73.99, 40.73, 0.002


def square(x0, y0, s):
    return f"POLYGON(({x0} {y0},{x0 + s} {y0},{x0 + s} {y0 + s},{x0} {y0 + s},{x0} {y0}))"


def grid_cells(n, cols=5, lon0=LON0, lat0=LAT0, step=STEP):
    return [(lon0 + (i % cols) * step, lat0 + (i // cols) * step) for i in range(n)]


def snapshot(folder: Path) -> dict:
    """Every file under folder -> sha256 (hidden files included: leftovers count)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder) + "/"] = "dir"
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def sha(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


OBSERVED = []   # (test id, message) of every refusal checked; TOPT_RECORD_REFUSALS=file.json dumps them


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("TOPT_RECORD_REFUSALS")
    if out and OBSERVED:
        import json

        Path(out).write_text(json.dumps(OBSERVED, indent=1, ensure_ascii=False), encoding="utf-8")


def assert_clear_message(msg: str, *must):
    """A user-facing message: no traceback, and says what/expected/how (checked by keywords)."""
    OBSERVED.append((os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0], msg))
    assert "Traceback" not in msg and 'File "' not in msg, msg
    assert "Unexpected error" not in msg, f"raw exception leaked to the user: {msg}"
    low = msg.lower()
    for word in must:
        if isinstance(word, tuple):
            assert any(w.lower() in low for w in word), f"none of {word} in: {msg}"
        else:
            assert word.lower() in low, f"{word!r} not in: {msg}"


@pytest.fixture
def run_alg(topt_provider, qgis_new_project):
    """processing.run(alg, params) -> (result or None, error message or None, feedback)."""
    import processing
    from qgis.core import QgsProcessingException

    from .helpers import LogFeedback

    def _run(alg, params, feedback=None):
        fb = feedback or LogFeedback()
        try:
            res = processing.run(alg, params, feedback=fb)
        except QgsProcessingException as exc:
            return None, str(exc), fb
        return res, None, fb

    return _run


HOW_WORDS = ("choose", "use", "set", "check", "remove", "fix", "fill", "label", "lower", "retrain", "restore",
             "delete", "assign", "run", "give", "provide", "copy", "install", "pass", "leave", "increase",
             "save", "recompute")
HOW = re.compile(r"\b(" + "|".join(HOW_WORDS) + r")\b")     # whole words: "because" is not "use"


def assert_refusal(msg, what, expected=True):
    """what = substring(s) naming the problem; expected/how are checked generically."""
    assert msg is not None, "expected a refusal, got a result"
    whats = what if isinstance(what, list) else [what]     # a tuple = any one of these words
    assert_clear_message(msg, *whats)
    if expected:
        assert any(w in msg.lower() for w in ("expected", "needs", "must", "(fields:", "one of", "requested but", "at least", "<=")), \
            f"message does not say what was expected: {msg}"
    assert HOW.search(msg.lower()), f"message does not say how to fix it: {msg}"
