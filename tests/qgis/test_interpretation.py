"""See why (issue 11) in QGIS: the attention links layer, influence fields, the why field, the evidence
layer, and report maps that a browser really draws (headless Chromium)."""
import re
import shutil
import subprocess

import numpy as np
import pytest
from qgis.core import QgsVectorLayer

from topt_test_helpers import FAST_PROMPT, FAST_SREL, as_layer, sample_params


@pytest.fixture(scope="module")
def linked(topt_provider, sample_copy, tmp_path_factory):
    import processing

    out = tmp_path_factory.mktemp("links")
    res = processing.run("topt:train_regions", {
        **sample_params(sample_copy), **FAST_SREL, "RESTARTS": 2, "LINKS_PER_REGION": 4,
        "OUTPUT": str(out / "emb.gpkg"), "OUTPUT_MODEL": str(out / "model"), "OUTPUT_LINKS": str(out / "links.gpkg")})
    return res, out


def rows(layer, *names):
    return [[f[n] for n in names] for f in layer.getFeatures()]


def test_links_layer_has_top_k_partners_with_valid_weights_and_ids(linked):
    res, out = linked
    links = as_layer(res["OUTPUT_LINKS"])
    regions = {str(r[0]) for r in rows(as_layer(res["OUTPUT"]), "region_id")}
    assert links.fields().names()[-6:] == ["source_id", "target_id", "weight", "rank", "distance_m", "od_flow"]
    data = rows(links, "source_id", "target_id", "weight", "rank", "distance_m", "od_flow")
    assert 0 < len(data) <= 180 * 4 and len(data) > 180 * 3          # a dense row has k partners
    assert {str(r[0]) for r in data} <= regions and {str(r[1]) for r in data} == regions
    w = np.array([r[2] for r in data])
    assert np.all(w > 0) and np.all(w <= 1)
    per_target = {}
    for s, t, wt, rank, dist, od in data:
        per_target.setdefault(t, []).append((rank, wt))
        assert s != t and dist > 0 and od in (0, 1)
    for t, items in per_target.items():
        assert sum(wt for _, wt in items) <= 1 + 1e-6
        assert sorted(r for r, _ in items) == list(range(1, len(items) + 1))
    assert any(r[5] == 1 for r in data) and any(r[5] == 0 for r in data)   # OD flag both ways on the sample


def test_links_layer_opens_styled_with_weighted_arrows(linked):
    res, _ = linked
    layer = QgsVectorLayer(str(res["OUTPUT_LINKS"]), "links", "ogr")   # loads the style saved in the file
    assert layer.isValid()
    sl = layer.renderer().symbol().symbolLayer(0)
    assert sl.layerType() == "ArrowLine"
    width = sl.dataDefinedProperties().property(sl.PropertyArrowWidth)
    assert width.isActive() and '"weight"' in width.expressionString()


def test_embedding_layer_gets_influence_fields(linked):
    res, _ = linked
    layer = as_layer(res["OUTPUT"])
    vals = np.array(rows(layer, "attn_in", "attn_dist_m", "centrality"), dtype=float)
    assert vals.shape == (180, 3) and np.isfinite(vals).all()
    assert vals[:, 0].min() >= 0 and vals[:, 0].std() > 0
    assert vals[:, 1].min() > 0 and vals[:, 1].max() < 30000             # Manhattan is ~20 km long
    assert np.all(vals[:, 2] >= 1) and np.all(vals[:, 2] == np.round(vals[:, 2]))
    assert layer.renderer().type() == "graduatedSymbol" and layer.renderer().classAttribute() == "attn_in"


@pytest.fixture(scope="module")
def predicted(linked, tmp_path_factory):
    import processing

    res, _ = linked
    out = tmp_path_factory.mktemp("why")
    pr = processing.run("topt:predict_regions", {
        "INPUT": str(res["OUTPUT"]), "TARGET_FIELD": "crime_count", "TASK": "crime", "MODEL": res["OUTPUT_MODEL"],
        **FAST_PROMPT, "OUTPUT": str(out / "pred.gpkg"), "OUTPUT_REPORT": str(out / "report.html"),
        "OUTPUT_EVIDENCE": str(out / "evidence.gpkg")})
    return pr, out


def test_predict_writes_a_why_field_naming_routes_and_labelled_neighbours(predicted):
    pr, _ = predicted
    why = [r[0] for r in rows(as_layer(pr["OUTPUT"]), "why")]
    assert len(why) == 180 and all(isinstance(w, str) and w.startswith(("routes:", "labelled neighbours"))
                                   for w in why)
    assert all("embedding" in w or "view" in w or "text" in w for w in why)


def test_evidence_layer_links_regions_to_their_labelled_neighbours(predicted):
    pr, _ = predicted
    if "OUTPUT_EVIDENCE" not in pr:
        pytest.fail("the sample's crime task uses the labelled-neighbour term; expected an evidence layer")
    ev = as_layer(pr["OUTPUT_EVIDENCE"])
    data = rows(ev, "source_id", "target_id", "weight")
    assert 0 < len(data) <= 180 * 3
    assert all(s != t and 0 < w <= 1 for s, t, w in data)
    why = {str(r[0]): r[1] for r in rows(as_layer(pr["OUTPUT"]), "region_id", "why")}
    s, t, _ = max(data, key=lambda r: r[2])
    assert f"{s} (" in why[str(t)]                                       # the strongest neighbour is named


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_maps_render_in_headless_chromium(predicted, tmp_path):
    from matplotlib.image import imread

    pr, out = predicted
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 6                    # 4 maps + scatter + histogram
    assert "map of residuals" in html and "map of interval widths" in html
    browser = _chromium()
    if browser is None:
        pytest.fail("chromium is missing: scripts/setup.sh installs it (Debian package chromium)")

    def coloured_share(page):
        png = page.with_suffix(".png")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={png}", "--window-size=1000,2600", page.as_uri()],
                       check=True, timeout=120, capture_output=True)
        img = imread(str(png))[..., :3]
        assert img.shape[0] >= 2000 and img.shape[1] >= 900
        return float(((img.max(-1) - img.min(-1)) > 0.25).mean())        # saturated pixels: the maps' colours

    real = coloured_share(out / "report.html")
    blank = tmp_path / "no_images.html"                                    # the same page, images broken
    blank.write_text(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,AAAA", html),
                     encoding="utf-8")
    without = coloured_share(blank)
    assert without < 0.002 and real > 0.01 and real > 10 * without, (real, without)


def test_prediction_layer_carries_an_interval_width_style(predicted):
    import sqlite3

    from processing_provider.adapters.styles import add_named_styles

    pr, out = predicted
    con = sqlite3.connect(out / "pred.gpkg")
    rows = dict(con.execute("select styleName, useAsDefault from layer_styles").fetchall())
    qml = con.execute("select styleQML from layer_styles where styleName = 'interval width'").fetchone()[0]
    con.close()
    assert rows == {"topt": 1, "interval width": 0}
    assert '"pred_hi" - "pred_lo"' in qml.replace("&quot;", '"')
    layer = QgsVectorLayer(str(out / "pred.gpkg"), "pred", "ogr")          # opens with the default style
    assert layer.renderer().classAttribute() == pr["PRED_FIELD"]
    add_named_styles(layer, [("interval width", '"pred_hi" - "pred_lo"')])  # what the desktop load adds
    assert "interval width" in layer.styleManager().styles()
    assert layer.renderer().classAttribute() == pr["PRED_FIELD"]            # the shown style is unchanged
    layer.styleManager().setCurrentStyle("interval width")
    assert layer.renderer().classAttribute() == '"pred_hi" - "pred_lo"'
    assert len(layer.renderer().ranges()) == 5
