"""Stage 2 on Manhattan-180: the default ``predict_regions`` configuration, its intervals, spatial folds
and an ablation of every component. ``run()`` is what ``bench/manhattan.py --prompt4re`` calls.

Per task (crime, check-in, 311 calls) and SREL seed, on the HAFusion-NY outer folds (KFold(10), layer
order): the default ``PromptConfig`` (stacked routes, labelled-neighbour term, both scales, MiniLM,
head route off) with the sample's ``neighbourhood`` names as TEXT_FIELDS when the data carries them
(the layer front door); Ridge(alpha=1) on the same embeddings and folds; CV+ interval coverage and
width at LEVEL 0.9; the same under ``spatial-blocks``; and each component switched off (the head
route switched on, on the first ``--head-seeds`` seeds only: it costs ~20x). Every choice inside a
run is made on inner splits of its outer training fold (``topt_core.prompt.train``).
"""
from __future__ import annotations

import time

import numpy as np

TASKS = ("crime", "checkin", "service")
TASK_LABEL = {"crime": "crime", "checkin": "check-in", "service": "service calls"}
PUBLISHED = {"crime": (56.1, 76.1, 0.734), "checkin": (202.8, 322.8, 0.844), "service": (1273, 1951, 0.493)}
ABLATIONS = {
    "no views route": dict(use_views=False),
    "no text route": dict(use_text=False),
    "no labelled neighbours": dict(use_neighbours=False),
    "original scale only": dict(target_transform="none"),
    "no user texts (names)": "no_texts",
    "embedding route only (Ridge, alpha tuned)": dict(use_views=False, use_text=False, use_neighbours=False,
                                                      target_transform="none"),
    "with the cross-attention head route": dict(use_head="on"),
}
HEAD_ABLATION = "with the cross-attention head route"


def run(embeddings_by_seed: dict, data, tasks=TASKS, ablation=True, head_seeds=3, cache_dir=None, log=print,
        ablation_seeds=None) -> dict:
    """{task: {method: [per-seed dict]}}; methods: "default", "ridge", "spatial", "spatial ridge", ablations."""
    from dataclasses import replace

    from topt_core.config import PromptConfig
    from topt_core.evaluate import ridge_kfold
    from topt_core.prompt import run_prompt4re

    out = {t: {} for t in tasks}
    seeds = list(embeddings_by_seed)
    bare = replace(data, texts={})
    for task in tasks:
        y = data.targets[task]
        for si, (seed, emb) in enumerate(embeddings_by_seed.items()):
            base = PromptConfig(task=task, protocol="hafusion-ny", seed=2026 + int(seed))
            rows = {}
            runs = {"default": (base, data), "spatial": (base.replace(protocol="spatial-blocks"), data)}
            if ablation and (ablation_seeds is None or si < ablation_seeds):
                for name, over in ABLATIONS.items():
                    if name == HEAD_ABLATION and si >= head_seeds:
                        continue
                    runs[name] = (base, bare) if over == "no_texts" else (base.replace(**over), data)
            for name, (cfg, d) in runs.items():
                t0 = time.perf_counter()
                res = run_prompt4re(emb, d, y, TASK_LABEL[task], cfg, cache_dir=cache_dir)
                rows[name] = {**res.metrics, "coverage": res.coverage, "width": res.width, "seed": seed,
                              "wall_s": time.perf_counter() - t0, "encode_s": res.timings["encode_s"],
                              "ridge_r2": res.ridge_metrics["r2"], "ridge_mae": res.ridge_metrics["mae"],
                              "ridge_rmse": res.ridge_metrics["rmse"], "knn_r2": res.knn_metrics.get("r2", np.nan),
                              "knn_mae": res.knn_metrics.get("mae", np.nan)}
            m, _ = ridge_kfold(emb, y, "hafusion-ny")
            assert abs(rows["default"]["ridge_mae"] - m["mae"]) < 1e-6 * max(1.0, m["mae"])   # the same folds
            for name, r in rows.items():
                out[task].setdefault(name, []).append(r)
            d, sp = rows["default"], rows["spatial"]
            log(f"{task:8s} seed {seed}: R2 {d['r2']:.3f} (Ridge {d['ridge_r2']:.3f}), MAE {d['mae']:.1f}, coverage "
                f"{d['coverage']:.3f}, width {d['width']:.4g}, kNN R2 {d['knn_r2']:.3f}; spatial R2 {sp['r2']:.3f} (Ridge "
                f"{sp['ridge_r2']:.3f}, kNN {sp['knn_r2']:.3f}); "
                f"{d['wall_s']:.1f} s")
    return {"results": out, "seeds": seeds, "head_seeds": seeds[:head_seeds]}


def summarise(results: dict) -> dict:
    """JSON block ``prompt4re.<task>`` for the default configuration, plus every method's means."""
    res = results["results"]
    summary, methods = {}, {}
    for task, by in res.items():
        for n_abl in sorted({len(rows) for rows in by.values()} - {len(by["default"])}):
            # ablations on fewer seeds: the default on those same seeds, to compare like with like
            by = {**by, f"default (the first {n_abl} seeds)": by["default"][:n_abl]}
        mean = lambda name, key: float(np.mean([r[key] for r in by[name]]))  # noqa: E731
        std = lambda name, key: float(np.std([r[key] for r in by[name]]))  # noqa: E731
        summary[task] = {"r2": mean("default", "r2"), "r2_std": std("default", "r2"), "mae": mean("default", "mae"),
                         "rmse": mean("default", "rmse"), "ridge_r2": mean("default", "ridge_r2"),
                         "ridge_mae": mean("default", "ridge_mae"), "coverage": mean("default", "coverage"),
                         "width": mean("default", "width"), "spatial_r2": mean("spatial", "r2"),
                         "spatial_ridge_r2": mean("spatial", "ridge_r2"), "wall_s": mean("default", "wall_s"),
                         "knn_r2": mean("default", "knn_r2"), "spatial_knn_r2": mean("spatial", "knn_r2"),
                         "seeds": [r["seed"] for r in by["default"]]}
        methods[task] = {name: {k: (mean(name, k), std(name, k)) for k in ("r2", "mae", "rmse", "coverage")}
                         | {"n": len(rows)} for name, rows in by.items()}
    return {"default": summary, "methods": methods}


def markdown(summ: dict) -> str:
    lines = ["| task | method | R² | MAE | RMSE | coverage (0.9) | seeds |", "|---|---|---|---|---|---|---|"]
    for task, by in summ["methods"].items():
        p = PUBLISHED[task]
        lines.append(f"| {TASK_LABEL[task]} | HAFusion published (test-selected epoch) | {p[2]:.3f} | {p[0]} | {p[1]} "
                     "| | |")
        d = summ["default"][task]
        lines.append(f"| {TASK_LABEL[task]} | Ridge on the embeddings (published protocol) | {d['ridge_r2']:.3f} | "
                     f"{d['ridge_mae']:.1f} | | | |")
        lines.append(f"| {TASK_LABEL[task]} | inverse-distance interpolation of the labels (k = 8) | {d['knn_r2']:.3f} | "
                     "| | | |")
        for name, s in by.items():
            lines.append(f"| {TASK_LABEL[task]} | {name} | {s['r2'][0]:.3f} ± {s['r2'][1]:.3f} | {s['mae'][0]:.1f} | "
                         f"{s['rmse'][0]:.1f} | {s['coverage'][0]:.3f} | {s['n']} |")
    return "\n".join(lines)
