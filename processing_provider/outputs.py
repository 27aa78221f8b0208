"""What the algorithms write besides feature sinks: model folders and HTML reports
(written to a temporary path, then moved into place, so a cancelled or failed run
leaves nothing partial), and the styles of loaded outputs (layer post-processors,
used only when the desktop loads the result; harmless headless).
"""
from __future__ import annotations

import base64
import html
import io
import os
import shutil
import tempfile
from pathlib import Path

from qgis.core import (QgsCategorizedSymbolRenderer, QgsClassificationQuantile, QgsGraduatedSymbolRenderer,
                       QgsProcessingLayerPostProcessorInterface, QgsRendererCategory, QgsStyle, QgsSymbol,
                       QgsVectorLayer)

# -- files -----------------------------------------------------------------------------------------


def atomic_folder(target, write):
    """Call ``write(tmp_folder)``, then move every file it wrote into ``target`` (config.json last).

    Files already in ``target`` that the new write does not produce but a model folder owns
    (``*.safetensors``, ``config.json``) are removed, so an old model never mixes with a new one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=str(target.parent)))
    try:
        write(tmp)
        target.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in tmp.iterdir())
        for old in target.iterdir():
            if old.is_file() and old.name not in names and (old.suffix == ".safetensors" or old.name == "config.json"):
                old.unlink()
        for name in sorted(names, key=lambda x: x == "config.json"):
            os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def atomic_text(path, text: str):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)


# -- styles ----------------------------------------------------------------------------------------

class _StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Graduated (numeric field) or categorized (class field) renderer on the loaded output."""

    _alive = []   # Processing keeps only a raw pointer: hold a Python reference until the layer is styled

    def __init__(self, field: str, kind: str, classes: int = 5):
        super().__init__()
        self.field, self.kind, self.classes = field, kind, classes

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsVectorLayer) and layer.isValid():
            apply_style(layer, self.field, self.kind, self.classes)

    @classmethod
    def create(cls, field, kind, classes=5):
        pp = cls(field, kind, classes)
        cls._alive.append(pp)
        del cls._alive[:-32]
        return pp


def apply_style(layer, field: str, kind: str, classes: int = 5) -> bool:
    """Style ``layer`` by ``field``: kind 'graduated' (quantiles, Viridis) or 'categorized'."""
    idx = layer.fields().indexFromName(field)
    if idx < 0:
        return False
    symbol = QgsSymbol.defaultSymbol(layer.geometryType())
    if symbol is None:
        return False
    ramp = QgsStyle.defaultStyle().colorRamp("Viridis") or QgsStyle.defaultStyle().colorRamp("Spectral")
    if kind == "graduated":
        r = QgsGraduatedSymbolRenderer(field)
        r.setSourceSymbol(symbol)
        if ramp is not None:
            r.setSourceColorRamp(ramp)
        r.setClassificationMethod(QgsClassificationQuantile())
        r.updateClasses(layer, classes)
    else:
        values = sorted(v for v in layer.uniqueValues(idx) if v is not None and str(v) != "NULL")
        cats = []
        for k, v in enumerate(values):
            sym = symbol.clone()
            if ramp is not None:
                sym.setColor(ramp.color(k / max(len(values) - 1, 1)))
            cats.append(QgsRendererCategory(v, sym, str(v)))
        r = QgsCategorizedSymbolRenderer(field, cats)
    layer.setRenderer(r)
    layer.triggerRepaint()
    return True


def style_on_load(context, dest_id, field, kind, classes=5):
    """Attach a style post-processor when the result will be loaded into a project (desktop)."""
    if dest_id and context.willLoadLayerOnCompletion(dest_id):
        context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(
            _StylePostProcessor.create(field, kind, classes))


# -- HTML report -----------------------------------------------------------------------------------

def figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(observed, predicted, title: str):
    """(scatter png b64, residual histogram png b64) with matplotlib's Agg backend."""
    import numpy as np
    from matplotlib.figure import Figure   # no pyplot: no global state, no GUI backend

    obs = np.asarray(observed, dtype=float)
    pred = np.asarray(predicted, dtype=float)
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot(111)
    ax.scatter(obs, pred, s=12, alpha=0.7, color="#31688e")
    if obs.size:
        lo, hi = float(min(obs.min(), pred.min())), float(max(obs.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="#999999", lw=1, ls="--")
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted (out-of-fold)")
    ax.set_title(title)
    scatter = figure_png(fig)
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.add_subplot(111)
    ax.hist(pred - obs, bins=30, color="#35b779")
    ax.set_xlabel("residual (predicted - observed)")
    ax.set_ylabel("regions")
    hist = figure_png(fig)
    return scatter, hist


def esc(x) -> str:
    return html.escape(str(x))


def table(header, rows) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt(x, digits=3) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if x != x:
        return "n/a"
    return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:,.1f}"


def html_page(title: str, sections) -> str:
    css = ("body{font-family:sans-serif;max-width:980px;margin:1.5em auto;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
           "text-align:left}th{background:#f2f2f2}pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;"
           "font-size:90%}img{margin:4px}")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{css}</style></head><body><h1>{esc(title)}</h1>"]
    for heading, content in sections:
        parts.append(f"<h2>{esc(heading)}</h2>{content}")
    parts.append("</body></html>")
    return "\n".join(parts)


def img(b64: str, alt: str) -> str:
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{b64}'/>"
