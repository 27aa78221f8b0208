"""How loaded outputs look: graduated or categorized renderers, applied when the desktop loads a result."""
from __future__ import annotations

from qgis.core import (QgsCategorizedSymbolRenderer, QgsClassificationQuantile, QgsGraduatedSymbolRenderer,
                       QgsProcessingLayerPostProcessorInterface, QgsRendererCategory, QgsStyle, QgsSymbol,
                       QgsVectorLayer)


class _StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Graduated (numeric field) or categorized (class field) renderer on the loaded output."""

    _alive = []   # Processing keeps only a raw pointer: hold a Python reference until the layer is styled

    def __init__(self, field: str, kind: str, classes: int = 5, extra=()):
        super().__init__()
        self.field, self.kind, self.classes, self.extra = field, kind, classes, tuple(extra)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsVectorLayer) and layer.isValid():
            add_named_styles(layer, self.extra)
            apply_style(layer, self.field, self.kind, self.classes)

    @classmethod
    def create(cls, field, kind, classes=5, extra=()):
        pp = cls(field, kind, classes, extra)
        cls._alive.append(pp)
        del cls._alive[:-32]
        return pp


def links_renderer(field: str):
    """Arrows toward the region that attends, width and opacity growing with the attention weight."""
    from qgis.core import QgsArrowSymbolLayer, QgsLineSymbol, QgsProperty, QgsSingleSymbolRenderer, QgsSymbolLayer
    from qgis.PyQt.QtGui import QColor

    arrow = QgsArrowSymbolLayer()
    arrow.setIsCurved(False)
    arrow.setHeadType(QgsArrowSymbolLayer.HeadSingle)
    arrow.setColor(QColor(180, 30, 60))
    scale = f'scale_linear("{field}", minimum("{field}"), maximum("{field}"), 0.15, 1.6)'
    arrow.setDataDefinedProperty(QgsSymbolLayer.PropertyArrowWidth, QgsProperty.fromExpression(scale))
    arrow.setDataDefinedProperty(QgsSymbolLayer.PropertyArrowStartWidth, QgsProperty.fromExpression(scale))
    arrow.setDataDefinedProperty(QgsSymbolLayer.PropertyArrowHeadLength, QgsProperty.fromExpression(f"2 * {scale}"))
    arrow.setDataDefinedProperty(QgsSymbolLayer.PropertyArrowHeadThickness, QgsProperty.fromExpression(f"1.5 * {scale}"))
    arrow.setDataDefinedProperty(QgsSymbolLayer.PropertyFillColor, QgsProperty.fromExpression(
        f'color_rgba(180, 30, 60, scale_linear("{field}", minimum("{field}"), maximum("{field}"), 40, 230))'))
    symbol = QgsLineSymbol()
    symbol.changeSymbolLayer(0, arrow)
    return QgsSingleSymbolRenderer(symbol)


def add_named_styles(layer, extra) -> None:
    """Extra styles the user can switch to (Layers panel > Styles): ``extra`` = [(name, expression)], each
    graduated by the expression (e.g. the interval width "pred_hi" - "pred_lo")."""
    from qgis.core import QgsMapLayerStyle

    for name, expression in extra:
        r = graduated_renderer(layer, expression, 5, precision=2)
        if r is None:
            continue
        keep = QgsMapLayerStyle()
        keep.readFromLayer(layer)
        layer.setRenderer(r)
        style = QgsMapLayerStyle()
        style.readFromLayer(layer)
        layer.styleManager().addStyle(name, style)
        keep.writeToLayer(layer)


def graduated_renderer(layer, attribute: str, classes: int = 5, precision: int = 2):
    """Quantile classes in Viridis of a field or an expression; None without a symbol."""
    symbol = QgsSymbol.defaultSymbol(layer.geometryType())
    if symbol is None:
        return None
    ramp = QgsStyle.defaultStyle().colorRamp("Viridis") or QgsStyle.defaultStyle().colorRamp("Spectral")
    r = QgsGraduatedSymbolRenderer(attribute)
    r.setSourceSymbol(symbol)
    if ramp is not None:
        r.setSourceColorRamp(ramp)
    method = QgsClassificationQuantile()
    method.setLabelPrecision(precision)
    method.setLabelTrimTrailingZeroes(True)
    r.setClassificationMethod(method)
    r.updateClasses(layer, classes)
    return r


def apply_style(layer, field: str, kind: str, classes: int = 5) -> bool:
    """Style ``layer`` by ``field``: kind 'graduated' (quantiles, Viridis), 'categorized' or 'links' (arrows)."""
    idx = layer.fields().indexFromName(field)
    if idx < 0:
        return False
    if kind == "links":
        layer.setRenderer(links_renderer(field))
        layer.triggerRepaint()
        return True
    if kind == "graduated":
        r = graduated_renderer(layer, field, classes, _label_precision(layer, idx))
        if r is None:
            return False
    else:
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        if symbol is None:
            return False
        ramp = QgsStyle.defaultStyle().colorRamp("Viridis") or QgsStyle.defaultStyle().colorRamp("Spectral")
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


def _label_precision(layer, idx) -> int:
    """Decimals of the legend: none for values in the hundreds and above, more for small ranges."""
    lo, hi = layer.minimumValue(idx), layer.maximumValue(idx)
    try:
        span = abs(float(hi) - float(lo))
    except (TypeError, ValueError):
        return 2
    return 0 if span >= 100 else (1 if span >= 10 else (2 if span >= 1 else 3))


def save_default_style(dest_id, field, kind, classes=5, extra=()) -> bool:
    """Store the style in a GeoPackage output as its default, so a reopened file (and every qgis_process
    output) opens styled. Other formats keep only the on-load style.

    The style is exported from a layer that is closed before the provider writes it: saving through an
    open layer leaves the file in SQLite's WAL mode, and the next reader (a later algorithm taking this
    output as input) would then rewrite the file's header on close."""
    from qgis.core import QgsProviderRegistry

    path = str(dest_id or "").split("|", 1)[0]
    if not path.lower().endswith(".gpkg"):
        return False
    layer = QgsVectorLayer(str(dest_id), "topt output", "ogr")
    if not layer.isValid() or not apply_style(layer, field, kind, classes):
        return False
    docs = [("topt", f"{kind} by {field} (written by topt)", True, _qml(layer))]
    for name, expression in extra:                 # more styles to choose from (Style > Load from database)
        r = graduated_renderer(layer, expression, classes, precision=2)
        if r is not None:
            layer.setRenderer(r)
            docs.append((name, f"graduated by {expression} (written by topt)", False, _qml(layer)))
    uri = layer.source()
    del layer
    md = QgsProviderRegistry.instance().providerMetadata("ogr")
    ok = True
    for name, description, default, qml in docs:
        res = md.saveStyle(uri, qml, "", name, description, "", default, "")
        ok = ok and (res[0] if isinstance(res, tuple) else bool(res))
    _journal_back_to_delete(path)
    return ok


def _qml(layer) -> str:
    from qgis.PyQt.QtXml import QDomDocument

    doc = QDomDocument()
    layer.exportNamedStyle(doc)
    return doc.toString()


def _journal_back_to_delete(path):
    """Leave the GeoPackage in SQLite's default journal mode (what GDAL writes), if nobody holds it."""
    import sqlite3

    try:
        con = sqlite3.connect(path, timeout=0.5)
        try:
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()
    except sqlite3.Error:
        pass


def style_output(context, dest_id, field, kind, classes=5, extra=()):
    """Style an output both ways: saved in the file (GeoPackage) and applied when the desktop loads it;
    ``extra`` [(name, expression)] adds graduated styles to switch to."""
    save_default_style(dest_id, field, kind, classes, extra)
    style_on_load(context, dest_id, field, kind, classes, extra)


def style_on_load(context, dest_id, field, kind, classes=5, extra=()):
    """Attach a style post-processor when the result will be loaded into a project (desktop)."""
    if dest_id and context.willLoadLayerOnCompletion(dest_id):
        context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(
            _StylePostProcessor.create(field, kind, classes, extra))
