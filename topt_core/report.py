"""The HTML reports of prediction and evaluation: tables and matplotlib figures, one self-contained page.

Pure Python + matplotlib's Agg canvas (no pyplot, no GUI backend), so both front doors and
headless runs write the same report. Images are embedded as base64 PNGs.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np

from .evaluate import PROTOCOLS


def figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(observed, predicted, title: str):
    """(scatter png b64, residual histogram png b64) with matplotlib's Agg backend."""
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


def shapely_rings(geom) -> list:
    """The exterior rings of a (multi)polygon's parts as (K, 2) arrays; [] for anything else."""
    if geom is None or geom.is_empty:
        return []
    parts = getattr(geom, "geoms", [geom])
    return [np.asarray(p.exterior.coords)[:, :2] for p in parts if p.geom_type == "Polygon"]


def choropleth(shapes, values, title: str, cmap: str = "viridis", diverging: bool = False, label: str = "") -> str:
    """A map of ``values`` over the region polygons (``shapes``: per region a list of (K, 2) rings),
    as a base64 PNG. Regions with NaN are drawn grey; ``diverging`` centres the colours on 0."""
    from matplotlib import colormaps
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.figure import Figure

    values = np.asarray(values, dtype=float)
    polys, vals = [], []
    for rings, v in zip(shapes, values):
        for ring in rings:
            polys.append(np.asarray(ring, dtype=float))
            vals.append(v)
    vals = np.asarray(vals)
    fig = Figure(figsize=(4.6, 4.8))
    ax = fig.add_subplot(111)
    ok = np.isfinite(vals)
    if polys:
        lo, hi = (np.nanmin(vals), np.nanmax(vals)) if ok.any() else (0.0, 1.0)
        if diverging and ok.any():
            m = max(abs(lo), abs(hi)) or 1.0
            norm = TwoSlopeNorm(vcenter=0.0, vmin=-m, vmax=m)
        else:
            norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
        cm = colormaps["RdBu_r" if diverging else cmap]
        colors = [cm(norm(v)) if np.isfinite(v) else (0.85, 0.85, 0.85, 1.0) for v in vals]
        ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors=(1, 1, 1, 0.6), linewidths=0.2))
        allxy = np.concatenate(polys)
        ax.set_xlim(allxy[:, 0].min(), allxy[:, 0].max())
        ax.set_ylim(allxy[:, 1].min(), allxy[:, 1].max())
        from matplotlib.cm import ScalarMappable

        fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=ax, shrink=0.7, label=label)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title)
    return figure_png(fig)


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


def prediction_maps(shapes, y, pr) -> str:
    """Observed, predicted, out-of-fold residual and interval width on the map (HTML)."""
    lab = np.asarray(pr.labelled, dtype=bool)
    observed = np.where(lab, y, np.nan)
    resid = np.where(lab, np.asarray(pr.oof) - y, np.nan)
    imgs = [img(choropleth(shapes, observed, "observed (labelled regions)"), "map of observed values"),
            img(choropleth(shapes, pr.predictions, "predicted (every region)"), "map of predictions"),
            img(choropleth(shapes, resid, "out-of-fold residual (predicted - observed)", diverging=True),
                "map of residuals")]
    if pr.lo is not None:
        imgs.append(img(choropleth(shapes, np.asarray(pr.hi) - np.asarray(pr.lo),
                                   f"width of the {100 * pr.config.get('level', 0.9):.0f} % interval", cmap="magma"),
                        "map of interval widths"))
    return "".join(imgs)


def prediction_report(layer_name, target, pred_name, config, pr, y, emb_names, model_dir, from_model,
                      shapes=None) -> str:
    """The predict_regions report: maps, out-of-fold accuracy next to Ridge, intervals, plots, settings."""
    lab = np.asarray(pr.labelled, dtype=bool)
    metrics = table(["method", "MAE", "RMSE", "R²"], [
        ["Prompt4RE (out-of-fold)", fmt(pr.metrics["mae"]), fmt(pr.metrics["rmse"]), fmt(pr.metrics["r2"])],
        ["Ridge on embeddings (same folds)", fmt(pr.ridge_metrics["mae"]), fmt(pr.ridge_metrics["rmse"]),
         fmt(pr.ridge_metrics["r2"])]]
        + ([["Interpolation of the labels (inverse distance, same folds)", fmt(pr.knn_metrics["mae"]),
             fmt(pr.knn_metrics["rmse"]), fmt(pr.knn_metrics["r2"])]] if pr.knn_metrics else []))
    scatter, hist = plots(y[lab], np.asarray(pr.oof)[lab], f"{target}: out-of-fold")
    settings = [["layer", layer_name], ["target field", target], ["prediction field", pred_name],
                ["labelled regions", f"{int(lab.sum())} of {len(lab)}"],
                ["embedding fields", f"{len(emb_names)}" + (f" ({emb_names[0]} .. {emb_names[-1]})"
                                                           if emb_names else " (computed with the model)")],
                ["model folder", model_dir or "(none)"],
                ["descriptions from", "the model's stored views" if from_model else "the layer"],
                ["device", str(pr.device)],
                ["timings", ", ".join(f"{k} {v:.1f} s" for k, v in (pr.timings or {}).items())]]
    settings += [[k, v] for k, v in (pr.config or config.to_dict()).items()]
    enc = table(["encoder", "value"], [[k, v] for k, v in (pr.encoder_info or {}).items()])
    chosen = ""
    if getattr(pr, "chosen", None):
        keys = list(pr.chosen[0].keys())
        chosen = table(keys, [[c.get(k) if not isinstance(c.get(k), float) else fmt(c.get(k), 4)
                               for k in keys] for c in pr.chosen])
    shown = min(len(pr.prompts), 10)
    prompts = "".join(f"<h3>region {i}</h3><pre>{esc(pr.prompts[i])}</pre>" for i in range(shown))
    warn = ("<ul>" + "".join(f"<li>{esc(w)}</li>" for w in pr.warnings) + "</ul>") if pr.warnings else \
        "<p>none</p>"
    intervals = (f"<p>{100 * config.level:.0f} % prediction intervals (cross-conformal CV+ on the outer folds, "
                 f"fields pred_lo, pred_hi): {100 * pr.coverage:.1f} % of the labelled regions lie inside their "
                 f"out-of-fold interval; mean width {fmt(pr.width)}.</p>") if pr.lo is not None else ""
    final = pr.chosen[-1] if pr.chosen else {}
    routes = ", ".join(f"{r} {final[r]:.2f}" for r in ("embedding", "views", "text", "prompt") if final.get(r, 0) > 0)
    weights = (f"<p>The final model's routes, weighted on inner splits: {esc(routes)}; log1p scale "
               f"{final.get('log1p', 0):.2f}; labelled-neighbour term {final.get('neighbours', 0):.2f}.</p>"
               if final else "")
    sections = [
        ("Cross-validated accuracy", metrics + "<p>Out-of-fold predictions of the labelled regions: each "
         "region is predicted by a model that never saw its label (nested cross-validation; every choice on "
         "inner splits of the training folds only).</p>" + intervals + weights),
        ("Maps", prediction_maps(shapes, y, pr) if shapes is not None else "<p>no polygons in the input</p>"),
        ("Observed vs predicted", img(scatter, "observed vs predicted") + img(hist, "residuals")),
        ("Warnings", warn),
        ("Run settings", table(["setting", "value"], settings)),
        ("Text encoder", enc),
        ("Model selection per fold", chosen or "<p>n/a</p>"),
        (f"Prompts (first {shown} of {len(pr.prompts)})", prompts)]
    return html_page(f"ToPT prediction report: {target}", sections)


def evaluation_report(layer_name, names, protocol, alpha, rows, oofs, shapes=None) -> str:
    """The evaluate_embeddings report: the published protocols' figures, a plot and a residual map per target.

    ``oofs``: target -> (observed, out-of-fold predictions, rows of those regions in ``shapes``)."""
    header = ["target", "method", "protocol", "regions", "MAE", "RMSE", "R²", "NMI", "ARI"]
    body = [[r[0], r[1], r[2], r[3]] + [fmt(v) if v is not None else "" for v in r[4:]] for r in rows]
    sections = [("Results", table(header, body)),
                ("Settings", table(["setting", "value"], [
                    ["layer", layer_name], ["embedding fields", f"{len(names)} ({names[0]} .. {names[-1]})"],
                    ["protocol", f"{protocol}: {PROTOCOLS[protocol].describe()}"],
                    ["Ridge alpha", alpha],
                    ["clustering", "KMeans(random_state=3, n_init=10), NMI/ARI (sklearn)"]])),
                ("About these figures", "<p>Ridge regression k-fold: out-of-fold predictions of all folds "
                 "are pooled, negatives clipped to 0, then MAE/RMSE/R² are computed, exactly as the "
                 "published region-embedding papers do, so these numbers are comparable with theirs. "
                 "Regions with an empty target are left out.</p>")]
    for target, (y, oof, where) in oofs.items():
        scatter, hist = plots(y, oof, f"{target} (Ridge, {protocol})")
        maps = ""
        if shapes is not None:
            resid = np.full(len(shapes), np.nan)
            resid[where] = oof - y
            maps = img(choropleth(shapes, resid, f"{target}: out-of-fold residual", diverging=True), "residual map")
        sections.append((f"{target}: observed vs out-of-fold", maps + img(scatter, "scatter")
                         + img(hist, "residuals")))
    return html_page("ToPT embedding evaluation", sections)
