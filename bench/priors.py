"""Do the spatial priors show their worth? (issue 11) Attention distance and accuracy with and without
the learned distance bias, on Manhattan-180 and on a synthetic city whose truth is known.

For each configuration and seed, SREL is trained (single model, ``restarts=1``, to keep the run short)
and read back with ``srel/links.py``:

* **mean attention distance**: per region the attention-weighted mean distance of what it attends to
  (``attn_dist_m``, self included at 0 m), averaged over regions, next to the mean distance between
  two regions (what uniform attention would give);
* **share of attention on the 8 nearest regions** and on the region itself (the model is dense at these
  sizes, so the whole attention row is read);
* **accuracy**: Manhattan's three tasks (HAFusion-NY protocol) and, on the synthetic city, Ridge R² of
  the known ``truth`` (a smooth field: log1p of the relative POI density surface, which the regions' own POI counts
  only sample with Poisson noise, so a region's neighbours carry information its own counts lack), 10
  shuffled folds.

    python -m bench.priors --seeds 100-104 --json bench/out/priors.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"distance bias (default)": {}, "no distance bias": {"spatial_bias": "none"},
           "no distance bias, no centrality": {"spatial_bias": "none", "centrality": False},
           "sparse attention forced (8 nearest + 4 OD partners + anchors)": {"attention": "sparse"}}


def synthetic(n=400, seed=0):
    """A square-grid city with sparse POIs (8 per region on average) and the smooth truth log1p(density)."""
    from bench.city import make_city, region_data

    city = make_city(n, seed=seed, pois_per_region=8.0)
    data = region_data(city)
    data.targets = {"truth": np.log1p(city["density"] / city["density"].mean())}   # >= 0: the protocol clips at 0
    return data


def attention_figures(model, data) -> dict:
    from scipy.spatial.distance import pdist, squareform

    from topt_core.srel.links import attention_links

    n = data.n
    links = attention_links(model, data, k=n - 1)       # every partner: the whole dense row, every local edge
    a = np.zeros((n, n))
    a[links.target, links.source] = links.weight
    d = squareform(pdist(np.asarray(data.centroids, dtype=float)))
    near = np.argsort(d, 1)[:, 1:9]
    return {"mean_attention_distance_m": float(links.attn_dist_m.mean()),
            "mean_pair_distance_m": float(d.sum() / (n * (n - 1))),
            # sparse mode: the local edges' share only (what goes to anchor clusters is not per region)
            "attention_on_8_nearest": float(np.take_along_axis(a, near, 1).sum(1).mean()),
            "attention_to_self": float(1 - a.sum(1).mean()) if links.whole_rows else float("nan")}


def run(data, targets, protocol, seeds, log) -> dict:
    from topt_core.config import SrelConfig
    from topt_core.evaluate import ridge_kfold
    from topt_core.srel import train_srel

    out = {}
    for name, change in CONFIGS.items():
        rows = []
        for seed in seeds:
            cfg = SrelConfig(device="cpu", restarts=1, seed=seed).replace(**change)
            t0 = time.perf_counter()
            res = train_srel(data, cfg)
            row = {"seed": seed, "train_s": time.perf_counter() - t0, **attention_figures(res.model, data)}
            for t in targets:
                y = np.asarray(data.targets[t], dtype=float)
                row[f"{t}_r2"] = ridge_kfold(res.embeddings, y, protocol=protocol)[0]["r2"]
            rows.append(row)
            log(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                    if isinstance(v, float)))
        out[name] = rows
    return out


def summary(rows) -> dict:
    keys = [k for k in rows[0] if k != "seed"]
    return {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in keys}


def markdown(name, results, targets) -> str:
    head = ["configuration", "mean attention distance (m)", "mean pair distance (m)", "attention on 8 nearest",
            "attention to self"]
    head += [f"{t} R²" for t in targets]
    lines = [f"**{name}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cfg, rows in results.items():
        s = summary(rows)
        cells = [f"{s['mean_attention_distance_m'][0]:.0f} ± {s['mean_attention_distance_m'][1]:.0f}",
                 f"{s['mean_pair_distance_m'][0]:.0f}",
                 f"{s['attention_on_8_nearest'][0]:.3f} ± {s['attention_on_8_nearest'][1]:.3f}",
                 f"{s['attention_to_self'][0]:.3f}"]
        cells += [f"{s[f'{t}_r2'][0]:.3f} ± {s[f'{t}_r2'][1]:.3f}" for t in targets]
        lines.append(f"| {cfg} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baselines(data) -> dict:
    """What the truth needs: Ridge on the raw view values, and on them plus their mean over the region
    and its 8 nearest regions (a fixed spatial smoothing: what a local distance prior could learn)."""
    from scipy.spatial import cKDTree

    from bench.manhattan import raw_features
    from topt_core.evaluate import ridge_kfold

    x = raw_features(data)
    _, nn = cKDTree(data.centroids).query(data.centroids, 9)
    y = data.targets["truth"]
    return {"raw view values": ridge_kfold(x, y, protocol="random")[0]["r2"],
            "raw + their mean over the 8 nearest": ridge_kfold(np.hstack([x, x[nn].mean(1)]), y,
                                                                 protocol="random")[0]["r2"]}


def main(argv=None) -> int:
    from bench.manhattan import load_layers, parse_seeds

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="100-104")
    p.add_argument("--city-regions", type=int, default=400)
    p.add_argument("--json", default=None)
    p.add_argument("--configs", default="", help="comma-separated numbers of CONFIGS to run (default: all)")
    a = p.parse_args(argv)
    if a.configs:
        keep = [list(CONFIGS)[int(i)] for i in a.configs.split(",")]
        for name in list(CONFIGS):
            if name not in keep:
                del CONFIGS[name]
    seeds = parse_seeds(a.seeds)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    load0, t0 = os.getloadavg(), time.time()
    manhattan = load_layers(ROOT / "resources" / "sample" / "manhattan.gpkg")
    res = {"manhattan": run(manhattan, ("crime", "checkin", "service"), "hafusion-ny", seeds, log),
           "synthetic": run(synthetic(a.city_regions), ("truth",), "random", seeds, log),
           "seeds": seeds, "city_regions": a.city_regions, "loadavg_before": list(load0),
           "loadavg_after": list(os.getloadavg()), "wall_s": time.time() - t0}
    print(markdown("Manhattan-180 (sample layers, HAFusion-NY protocol)", res["manhattan"],
                   ("crime", "checkin", "service")))
    print()
    print(markdown(f"Synthetic city ({a.city_regions} regions, smooth truth, 10 shuffled folds)",
                   res["synthetic"], ("truth",)))
    base = baselines(synthetic(a.city_regions))
    res["synthetic_baselines"] = base
    print("\nSynthetic city without a model (Ridge, same folds): " + ", ".join(f"{k} R² {v:.3f}" for k, v in base.items()))
    print(f"\nseeds {seeds}, restarts=1, load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}, "
          f"{res['wall_s']:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
