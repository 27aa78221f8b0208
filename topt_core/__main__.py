"""``python -m topt_core``: the engine on files, for machines without QGIS.

    python -m topt_core train --regions regions.gpkg --pois pois.gpkg --poi-category category \\
        --output emb.gpkg --model-dir model/
    python -m topt_core predict --input emb.gpkg --target crime_count --task crime --model-dir model/ \\
        --output pred.gpkg
    python -m topt_core evaluate --input emb.gpkg --targets crime_count,checkin_count
    python -m topt_core cluster --input emb.gpkg --k 12 --output clusters.gpkg

Layers are read with geopandas (``topt_core.io``); a ``file.gpkg:layer`` suffix picks a layer.
Errors print one clear line and exit with status 2; cancel with Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _split(s: str | None) -> list[str]:
    return [x for x in (s or "").replace(";", ",").split(",") if x]


def _parser() -> argparse.ArgumentParser:
    from .config import (ATTENTION_MODES, SPARSE_RECIPES, SPATIAL_BIASES, TARGET_TRANSFORMS, TASKS, USE_HEAD_CHOICES,
                         PromptConfig, SrelConfig)
    from .evaluate import PROTOCOLS
    from .views.inputs import params as view_params

    p = argparse.ArgumentParser(prog="python -m topt_core", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="SREL: learn region embeddings (no labels used)")
    t.add_argument("--regions", required=True, help="polygon file (file.gpkg or file.gpkg:layer)")
    t.add_argument("--region-id", help="unique id field (default: row number)")
    t.add_argument("--text-fields", help="comma-separated text fields of the regions (names, zoning) for descriptions")
    views = t.add_argument_group("view inputs (one flag per input of each registered view, topt_core/views)")
    for param in view_params():
        views.add_argument(param.cli, dest=param.key, help=param.cli_help,
                           metavar={"layer": "FILE[:LAYER]", "field": "FIELD", "fields": "FIELD,..."}[param.kind])
    t.add_argument("--distance-crs", help="metric CRS for distances, e.g. EPSG:32618 (default: UTM zone)")
    d = SrelConfig()
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--embed-dim", type=int, default=d.embed_dim)
    t.add_argument("--spatial-bias", choices=SPATIAL_BIASES, default=d.spatial_bias)
    t.add_argument("--no-centrality", action="store_true")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--restarts", type=int, default=d.restarts,
                   help="independent trainings combined into one embedding (1 = a single model)")
    t.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    t.add_argument("--attention", default=d.attention, choices=ATTENTION_MODES,
                   help="auto (dense up to 1000 regions, sparse above), dense or sparse")
    t.add_argument("--sparse-recipe", default=d.sparse_recipe, choices=SPARSE_RECIPES,
                   help="auto: sparse POIs (median < 10 per region) also train masked regions and contrastive passes")
    t.add_argument("--view-weights", default="",
                   help="self-supervised loss weight per view, e.g. 'poi=1; geometry=0.5' (views not named: 1)")
    t.add_argument("--output", required=True, help="output file (.gpkg) with the region fields + emb_000…")
    t.add_argument("--model-dir", required=True, help="folder to save the model in")
    t.add_argument("--links", help="also write the attention links (top partners per region) as lines to this file")
    t.add_argument("--links-per-region", type=int, default=5)

    pr = sub.add_parser("predict", help="Prompt4RE: predict a numeric target for every region")
    pr.add_argument("--input", required=True, help="layer with emb_* fields and the target field")
    pr.add_argument("--target", required=True, help="numeric field, known on some regions (empty = unknown)")
    pr.add_argument("--task", default="generic", choices=TASKS)
    pr.add_argument("--task-description", default="", help="free text for the generic task")
    pc = PromptConfig()
    pr.add_argument("--text-encoder", default=pc.text_encoder)
    pr.add_argument("--model-dir", help="model folder from train (region descriptions use its stored views)")
    pr.add_argument("--region-id", help="field holding the model's region ids (default: chosen automatically)")
    pr.add_argument("--description-fields", help="comma-separated numeric fields describing regions (without model)")
    pr.add_argument("--report", help="HTML report to write")
    pr.add_argument("--evidence", help="also write lines from each region to its top labelled neighbours to this file")
    pr.add_argument("--text-fields", help="comma-separated text fields added to the region descriptions")
    pr.add_argument("--level", type=float, default=pc.level, help="prediction interval level (default 0.9)")
    pr.add_argument("--use-head", default=pc.use_head, choices=USE_HEAD_CHOICES,
                    help="the Prompt4RE cross-attention head route")
    pr.add_argument("--text-input", default=pc.text_input, choices=("auto", "description"),
                    help="what the language model reads: auto (the user's words only) or description (everything)")
    pr.add_argument("--protocol", default=pc.protocol, choices=tuple(PROTOCOLS),
                    help="outer folds: random (default), spatial-blocks, or a benchmark's")
    pr.add_argument("--folds", type=int, default=pc.folds, help="outer folds (0: the protocol's own)")
    pr.add_argument("--target-transform", default=pc.target_transform, choices=TARGET_TRANSFORMS)
    pr.add_argument("--seed", type=int, default=pc.seed)
    pr.add_argument("--device", default=pc.device)
    pr.add_argument("--output", required=True)

    ev = sub.add_parser("evaluate", help="published protocols: Ridge k-fold MAE/RMSE/R², KMeans NMI/ARI")
    ev.add_argument("--input", required=True)
    ev.add_argument("--targets", required=True, help="comma-separated target fields")
    ev.add_argument("--prefix", default="emb_", help="embedding field prefix")
    ev.add_argument("--protocol", default="hafusion-ny")
    ev.add_argument("--cluster-labels", help="reference label field for KMeans NMI/ARI")
    ev.add_argument("--report", help="HTML report to write (metrics, scatter plots, residual maps)")

    cl = sub.add_parser("cluster", help="KMeans clusters of the embeddings")
    cl.add_argument("--input", required=True)
    cl.add_argument("--k", type=int, default=12)
    cl.add_argument("--prefix", default="emb_")
    cl.add_argument("--seed", type=int, default=3)
    cl.add_argument("--output", required=True)
    return p


def _train(a, reporter) -> dict:
    from . import io
    from .files import atomic_folder
    from .config import SrelConfig, parse_view_weights
    from .srel import save_model, train_srel

    from .views.inputs import params as view_params

    inputs = {p.key: _split(getattr(a, p.key)) if p.kind == "fields" else getattr(a, p.key) for p in view_params()
              if getattr(a, p.key, None)}
    data, regions = io.read_region_data(a.regions, region_id=a.region_id, distance_crs=a.distance_crs,
                                        reporter=reporter, text_fields=_split(a.text_fields), **inputs)
    cfg = SrelConfig(epochs=a.epochs, embed_dim=a.embed_dim, spatial_bias=a.spatial_bias,
                     centrality=not a.no_centrality, seed=a.seed, restarts=a.restarts, device=a.device,
                     attention=a.attention, sparse_recipe=a.sparse_recipe,
                     view_weights=parse_view_weights(a.view_weights))
    res = train_srel(data, cfg, reporter)
    from .device import last_threads

    if str(res.device).startswith("cpu") and last_threads() is not None:
        reporter.info(f"SREL CPU threads: {last_threads()}.")
    emb_cols = {f"emb_{i:03d}": res.embeddings[:, i] for i in range(res.embeddings.shape[1])}
    links = None
    if res.model.config.layers > 0:
        from .srel.links import attention_links

        links = attention_links(res.model, data, a.links_per_region)
        emb_cols.update({"attn_in": links.attn_in, "attn_dist_m": links.attn_dist_m, "centrality": links.centrality})
    with atomic_folder(a.model_dir) as tmp:       # model and layer both, or neither
        save_model(res, tmp, data=data)
        io.write_layer(regions, emb_cols, a.output)
        if a.links and links is not None:
            io.write_links(regions, links, data.region_ids, a.links)
    return {"regions": data.n, "epochs_run": res.epochs_run, "device": str(res.device),
            "links": a.links if links is not None and a.links else None,
            "train_seconds": round(res.seconds, 2), "output": a.output, "model_dir": a.model_dir}


def _predict(a, reporter) -> dict:
    import numpy as np

    from . import io
    from .config import PromptConfig
    from .files import write_text
    from .naming import fit_names, name_limit, safe_field_name
    from .prediction import prediction_data, prediction_embeddings
    from .prompt import run_prompt4re
    from .report import prediction_report

    layer = io.read_layer(a.input)
    has_emb = any(io.EMBEDDING_FIELD.match(str(c)) for c in layer.columns)
    emb = io.embedding_matrix(layer, "emb_") if has_emb else None
    y = io.numeric_column(layer, a.target)
    described = _split(a.description_fields)
    columns = io.layer_columns(layer)
    data, match = prediction_data(columns, io.feature_ids(a.input, len(layer)), a.model_dir,
                                  a.region_id or "", lambda ids: io.layer_region_data(layer, ids, described),
                                  reporter)
    emb = prediction_embeddings(emb, a.model_dir, data, match, reporter)
    for f in _split(a.text_fields):
        data.texts[f] = np.asarray(["" if v is None else str(v) for v in columns[f]], dtype=object)
    cfg = PromptConfig(text_encoder=a.text_encoder, task=a.task, task_description=a.task_description,
                       seed=a.seed, device=a.device, protocol=a.protocol, folds=a.folds,
                       target_transform=a.target_transform, level=a.level, use_head=a.use_head,
                       text_input=a.text_input)
    res = run_prompt4re(emb, data, y, a.target, cfg, reporter)
    name = safe_field_name(a.target, max_len=58)   # as the QGIS algorithm: room for 'pred_'
    pred_name, oof_name, lab_name, lo_name, hi_name, why_name = fit_names(
        [f"pred_{name}", f"oof_{name}", "is_labelled", "pred_lo", "pred_hi", "why"], name_limit(a.output))
    from .prompt.why import evidence, why_texts

    html = (prediction_report(a.input, a.target, pred_name, cfg, res, y,
                              [c for c in layer.columns if io.EMBEDDING_FIELD.match(str(c))], a.model_dir,
                              match is not None and match.rows is not None, shapes=io.polygon_rings(layer))
            if a.report else None)
    io.write_layer(layer, {pred_name: res.predictions, lab_name: res.labelled.astype(np.int32),
                           oof_name: res.oof, lo_name: res.lo, hi_name: res.hi,
                           why_name: np.asarray(why_texts(res, data.region_ids), dtype=object)}, a.output)
    out = {"target": a.target, "task": a.task, "metrics": res.metrics, "ridge_metrics": res.ridge_metrics,
           "labelled": int(res.labelled.sum()), "regions": int(len(res.predictions)), "output": a.output,
           "fields": {"prediction": pred_name, "out_of_fold": oof_name, "labelled": lab_name, "low": lo_name,
                      "high": hi_name, "why": why_name}, "coverage": res.coverage, "width": res.width,
           "level": cfg.level}
    if a.evidence:
        tgt, src, w = evidence(res)
        io.write_evidence(layer, tgt, src, w, data.region_ids, a.evidence)
        out["evidence"] = a.evidence
    if html is not None:
        write_text(a.report, html)
        out["report"] = a.report
    return out


def _evaluate(a, reporter) -> dict:
    from . import io
    from .evaluate import kmeans_clustering_scores, ridge_kfold

    import numpy as np

    from .files import write_text
    from .report import evaluation_report

    layer = io.read_layer(a.input)
    emb = io.embedding_matrix(layer, a.prefix)
    out, rows, oofs = {}, [], {}
    for t in _split(a.targets):
        y = io.numeric_column(layer, t)
        mask = np.isfinite(y)
        metrics, oof = ridge_kfold(emb[mask], y[mask], a.protocol)
        out[t] = metrics
        rows.append([t, "ridge", a.protocol, int(mask.sum()), metrics["mae"], metrics["rmse"], metrics["r2"],
                     None, None])
        oofs[t] = (y[mask], oof, np.flatnonzero(mask))
    if a.cluster_labels:
        out["clustering"] = kmeans_clustering_scores(emb, layer[a.cluster_labels].astype(str).to_numpy())
        rows.append([a.cluster_labels, "kmeans", "kmeans-rs3", len(emb), None, None, None,
                     out["clustering"]["nmi"], out["clustering"]["ari"]])
    if a.report:
        names = [c for c in layer.columns if str(c).startswith(a.prefix)]
        write_text(a.report, evaluation_report(a.input, names, a.protocol, 1.0, rows, oofs,
                                               shapes=io.polygon_rings(layer)))
        out["report"] = a.report
    return out


def _cluster(a, reporter) -> dict:
    from sklearn.cluster import KMeans

    from . import io

    layer = io.read_layer(a.input)
    emb = io.embedding_matrix(layer, a.prefix)
    labels = KMeans(n_clusters=a.k, random_state=a.seed, n_init=10).fit_predict(emb)
    io.write_layer(layer, {"cluster": labels.astype("int32")}, a.output)
    return {"k": a.k, "output": a.output, "sizes": __import__("numpy").bincount(labels).tolist()}


def main(argv=None) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from .crs import ensure_proj_data

    ensure_proj_data()
    from .errors import ToptError
    from .progress import PrintReporter

    args = _parser().parse_args(argv)
    reporter = PrintReporter()
    t0 = time.time()
    try:
        result = {"train": _train, "predict": _predict, "evaluate": _evaluate, "cluster": _cluster}[args.command](
            args, reporter)
    except ToptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled: nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:   # a bug: one line for the user, the traceback only on request
        if os.environ.get("TOPT_DEBUG"):
            import traceback

            traceback.print_exc()
        print(f"error: unexpected error in topt_core ({type(exc).__name__}: {exc}); nothing was written. "
              "Re-run with TOPT_DEBUG=1 for the traceback and please report it.", file=sys.stderr)
        return 2
    result["wall_seconds"] = round(time.time() - t0, 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
