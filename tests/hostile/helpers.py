"""QGIS-side builders for the hostile matrix (memory layers, files, feedback that cancels)."""
from __future__ import annotations

from qgis.core import (QgsFeature, QgsField, QgsGeometry, QgsProcessingFeedback, QgsVectorFileWriter,
                       QgsVectorLayer, QgsCoordinateTransformContext)
from qgis.PyQt.QtCore import QVariant

from .conftest import STEP, grid_cells, square


class LogFeedback(QgsProcessingFeedback):
    """Keeps every message so tests can assert on warnings and on the absence of tracebacks."""

    def __init__(self):
        super().__init__()
        self.infos, self.warnings, self.errors = [], [], []

    def pushInfo(self, info):  # noqa: N802
        self.infos.append(info)
        super().pushInfo(info)

    def pushWarning(self, warning):  # noqa: N802
        self.warnings.append(warning)
        super().pushWarning(warning)

    def reportError(self, error, fatalError=False):  # noqa: N802,N803
        self.errors.append(error)
        super().reportError(error, fatalError)

    @property
    def text(self):
        return "\n".join(self.infos + self.warnings + self.errors)


class CancelAfter(LogFeedback):
    """isCanceled() becomes True after ``k`` calls (or once ``stage`` text has been set)."""

    def __init__(self, k=None, stage=None):
        super().__init__()
        self.k, self.stage, self.calls, self.armed = k, stage, 0, stage is None
        self.texts = []

    def _arm(self, text):
        if self.stage and not self.armed and self.stage.lower() in text.lower():
            self.armed = True
            self.armed_by = text

    def setProgressText(self, text):  # noqa: N802
        self.texts.append(text)
        self._arm(text)
        super().setProgressText(text)

    def pushInfo(self, info):  # noqa: N802
        self._arm(info)
        super().pushInfo(info)

    def isCanceled(self):  # noqa: N802
        if not self.armed:
            return False
        self.calls += 1
        return self.calls > (self.k or 0)


def regions_layer(n=12, crs="EPSG:4326", wkts=None, ids=None, id_type="integer", extra=None, cols=4,
                  lon0=None, lat0=None, step=STEP, geom="Polygon"):
    """Memory polygon layer; ``extra`` = {field: (type, values)}."""
    uri = f"{geom}?crs={crs}&field=id:{id_type}" if crs else f"{geom}?field=id:{id_type}"
    for name, (typ, _) in (extra or {}).items():
        uri += f"&field={name}:{typ}"
    lyr = QgsVectorLayer(uri, "regions", "memory")
    assert lyr.isValid(), uri
    kw = {}
    if lon0 is not None:
        kw = {"lon0": lon0, "lat0": lat0}
    if wkts is None:
        wkts = [square(x, y, step) for x, y in grid_cells(n, cols, step=step, **kw)]
    ids = list(range(1, len(wkts) + 1)) if ids is None else ids
    feats = []
    for k, w in enumerate(wkts):
        f = QgsFeature(lyr.fields())
        if w is not None:
            f.setGeometry(QgsGeometry.fromWkt(w))
        attrs = [ids[k]] + [vals[k] for _, (_, vals) in (extra or {}).items()]
        f.setAttributes(attrs)
        feats.append(f)
    lyr.dataProvider().addFeatures(feats)
    lyr.updateExtents()
    return lyr


def points_layer(xys, cats, crs="EPSG:4326", cat_type="string"):
    uri = f"Point?crs={crs}&field=category:{cat_type}" if crs else f"Point?field=category:{cat_type}"
    lyr = QgsVectorLayer(uri, "pois", "memory")
    feats = []
    for (x, y), c in zip(xys, cats):
        f = QgsFeature(lyr.fields())
        f.setGeometry(QgsGeometry.fromWkt(f"POINT({x} {y})"))
        f.setAttributes([c])
        feats.append(f)
    lyr.dataProvider().addFeatures(feats)
    lyr.updateExtents()
    return lyr


def pois_in_cells(n_regions, per=3, cats=("food", "shop", "park"), cols=4, step=STEP):
    xys, cs = [], []
    for k, (x, y) in enumerate(grid_cells(n_regions, cols, step=step)):
        for j in range(per):
            xys.append((x + step * (0.2 + 0.25 * j), y + step * (0.3 + 0.2 * j)))
            cs.append(cats[(k + j) % len(cats)] if k % 2 == 0 or j < 2 else cats[0])
    return xys, cs


def od_table(rows, o_type="integer", d_type="integer", w_type="double"):
    lyr = QgsVectorLayer(f"None?field=o:{o_type}&field=d:{d_type}&field=trips:{w_type}", "od", "memory")
    feats = []
    for r in rows:
        f = QgsFeature(lyr.fields())
        f.setAttributes(list(r))
        feats.append(f)
    lyr.dataProvider().addFeatures(feats)
    return lyr


def save_gpkg(layer, path, name=None):
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    opts.layerName = name or layer.name()
    if path.exists():
        opts.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteLayer
    err = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(path), QgsCoordinateTransformContext(), opts)
    assert err[0] == QgsVectorFileWriter.NoError, err
    return f"{path}|layername={opts.layerName}"
