"""Real cities at tract scale: the SREL embedding against the simple baselines, in the same run.

    .venv/bin/python -m bench.realcity --seeds 100-102 --json bench/realcity.json [--cities nyc,chicago]
        [--variants default,no-context] [--stage2] [--folds random,spatial-blocks]

The cities are GeoPackages built from public data by ``bench/realcity/build.py`` (provenance and
licences in ``bench/realcity/README.md``): census tracts (``regions``, with census/ACS targets that are
not derived from the inputs), OpenStreetMap-style POI points (``pois``) and, where there is any, an
OD table (``od``). They are read through the file front door (``topt_core.io``) exactly as
``python -m topt_core train`` reads a user's layers, so the counts, the joins and the warnings are
the ones a user gets.

Per city x target x seed x fold scheme (shuffled KFold(10) = ``random``; ``spatial-blocks``), on the
same folds:

* ``raw``: Ridge on the region's own view values (log1p counts and totals, log1p OD totals);
* ``raw+geometry``: the same plus log area, log perimeter and compactness;
* ``contextual``: raw + geometry plus the means of the view values over the regions 1, 2 and 3 rings
  away (touching polygons), as srai's contextual count embedder;
* ``srel-inputs``: raw + geometry plus the context view's densities (``views/derived.py``), i.e. what
  the SREL model is given, read by Ridge directly (not one of the issue's baselines: a check of
  whether the embedding keeps more than its inputs);
* ``knn``: inverse-distance mean of the 8 nearest labelled training regions (label interpolation);
* ``srel`` (and ``srel:<variant>``): Ridge on the SREL embedding trained with that seed (no label);
* ``stage2`` (``--stage2``): ``predict_regions``'s default (``run_prompt4re``) on the default embedding;
  ``stage2:<variant>`` (``--stage2-variants``) the same on that variant's embedding.

Every Ridge standardises its inputs and tunes alpha by efficient leave-one-out on the training fold
only (``RidgeCV``); predictions of a target >= 0 are clipped at 0. The test fold is touched once.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("PROJ_DATA", "/usr/share/proj")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "realcity"
ALPHAS = np.logspace(-2, 5, 15)
KNN_K = 8

# city -> how to read it (file inside bench/realcity/, layers and fields, targets: field -> label)
CITIES = {
    "nyc": dict(file=DATA / "nyc.gpkg", od=True,
                targets={"median_income": "median household income", "pop_density": "population density",
                         "gini": "Gini index", "poverty_rate": "poverty rate",
                         "bachelor_share": "share with a bachelor's degree"}),
    "chicago": dict(file=DATA / "chicago.gpkg", od=True,
                    targets={"per_capita_income": "per-capita income", "pop_density": "population density",
                             "poverty_rate": "poverty rate", "violent_crime_rate": "violent crime rate",
                             "health_literacy": "health literacy index"}),
    # the bundled sample, for development (not a real-city figure: its inputs are pre-aggregated)
    "manhattan": dict(file=ROOT / "resources" / "sample" / "manhattan.gpkg", od=True,
                      landuse_fields=[f"lu_{i:02d}" for i in range(11)],
                      targets={"crime_count": "crime", "checkin_count": "check-ins",
                               "service_call_count": "311 calls"}),
}


def city_specs() -> dict:
    return dict(CITIES)


OFF = dict(sparse_recipe="off")     # the rows below were measured before the recipe (srel/recipe.py) existed
VARIANTS = {                      # SrelConfig overrides, each an ablation row (srel:<name>)
    "default": {},                                   # sparse POIs: the recipe (masked + contrast + concat)
    "plain": OFF,                                    # the default before the recipe
    "no-derived": dict(OFF, geometry_view=False, context_view=False),     # the embedding before the derived views
    "no-context": dict(OFF, context_view=False),
    "no-geometry": dict(OFF, geometry_view=False),
    "features": dict(OFF, feature_weight=1.0),
    "derived-inputs-only": dict(OFF, geometry_weight=0.0, context_weight=0.0),   # fed in, no loss of their own
    "derived-low": dict(OFF, geometry_weight=0.25, context_weight=0.25),
    "concat": dict(OFF, view_fusion="concat"),       # the view encodings side by side instead of a weighted sum
    "masked": dict(OFF, mask_weight=1.0),            # GraphMAE-style masked regions, rebuilt from the neighbours
    "masked-only": dict(OFF, mask_weight=1.0, mask_rate=0.5),
    "masked-5": dict(OFF, mask_weight=5.0, mask_rate=0.5),
    "masked-5-concat": dict(OFF, mask_weight=5.0, mask_rate=0.5, view_fusion="concat"),
    "contrast": dict(OFF, contrast_weight=1.0),      # GRACE-style InfoNCE between two input-dropout passes
    "contrast-5": dict(OFF, contrast_weight=5.0),
    "masked-contrast-concat": dict(OFF, mask_weight=5.0, mask_rate=0.5, contrast_weight=1.0, view_fusion="concat"),
}


def load_city(spec, reporter=None):
    """RegionData through the file front door, as a user's ``python -m topt_core train`` run."""
    from topt_core import io

    s = str(spec["file"])
    od = spec.get("od", False)
    data, gdf = io.read_region_data(
        f"{s}:regions", region_id=spec.get("region_id", "region_id"),
        pois=f"{s}:pois", poi_category=spec.get("poi_category", "category"),
        od=f"{s}:od" if od else None, od_origin="origin_id" if od else None,
        od_destination="destination_id" if od else None, od_count="trips" if od else None,
        landuse_fields=tuple(spec.get("landuse_fields", ())), targets=tuple(spec["targets"]), reporter=reporter)
    return data


# -- baseline features (label-free) ------------------------------------------------------------------

def raw_features(data) -> np.ndarray:
    from topt_core.prompt.stack import view_features

    return view_features(data)


def geometry(data) -> np.ndarray:
    from topt_core.context import geometry_features

    return geometry_features(data.areas, data.perimeters)


def contextual(data) -> np.ndarray:
    from topt_core import spatial
    from topt_core.context import ring_means

    base = np.concatenate([raw_features(data), geometry(data)], 1)
    edges = spatial.neighbour_edges(data.centroids, data.adjacency, "auto", 6)
    return np.concatenate([base, ring_means(base, edges, 3)], 1)


def ring_readout(emb, data, rings: int = 2):
    """A parameter-free propagation readout (as SGC/SIGN): the embedding next to its means over the 1..rings
    hop rings, projected back to the embedding's width by PCA. Label-free; an ablation row of issue 18."""
    from sklearn.decomposition import PCA

    from topt_core import spatial
    from topt_core.context import ring_means

    edges = spatial.neighbour_edges(data.centroids, data.adjacency, "auto", 6)
    big = np.concatenate([emb, ring_means(emb, edges, rings)], 1)
    return PCA(emb.shape[1], random_state=0).fit_transform(big)


# -- models on folds ------------------------------------------------------------------------------------

def ridge_oof(x, y, folds, clip, standardise=True):
    """Out-of-fold Ridge, alpha by leave-one-out on the training fold. An embedding keeps its own scale
    (``standardise=False``): its trailing principal axes are small on purpose, and blowing them up to
    unit variance hands Ridge noise (the published protocol does not standardise either)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    oof = np.full(len(y), np.nan)
    for tr, te in folds:
        steps = [StandardScaler()] if standardise else []
        m = make_pipeline(*steps, RidgeCV(alphas=ALPHAS)).fit(x[tr], y[tr])
        oof[te] = m.predict(x[te])
    return np.clip(oof, 0, None) if clip else oof


def knn_oof(coords, y, folds, k=KNN_K):
    """Label interpolation on the folds: the same function stage 2 reports as its second baseline."""
    from topt_core.prompt.train import interpolation_oof

    return interpolation_oof(coords, y, folds, k)


def score(y, oof, rows):
    from topt_core.evaluate import regression_metrics

    return regression_metrics(y[rows], oof[rows])


def fold_sets(lab, coords, seed, schemes):
    from topt_core.evaluate import make_folds

    return {s: [(lab[a], lab[b]) for a, b in make_folds(len(lab), s, 10, seed, coords[lab])] for s in schemes}


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for scheme in per_seed[0]:
        vals = {m: [r[scheme][m] for r in per_seed] for m in ("r2", "mae")}
        out[scheme] = {"r2": float(np.mean(vals["r2"])), "r2_std": float(np.std(vals["r2"])),
                       "mae": float(np.mean(vals["mae"]))}
    out["r2"], out["mae"] = out["random"]["r2"], out["random"]["mae"]
    return out


def coverage(data, log):
    """What the inputs look like (the new user's view of the city)."""
    info = {"regions": int(data.n)}
    if data.poi_counts is not None:
        tot = data.poi_counts.sum(1)
        info.update(pois=int(tot.sum()), poi_categories=int(data.poi_counts.shape[1]),
                    median_pois=float(np.median(tot)), share_no_poi=float(np.mean(tot == 0)))
    if data.mobility is not None:
        m = data.mobility
        touched = (np.asarray(m.sum(1)).ravel() + np.asarray(m.sum(0)).ravel()) > 0
        info.update(od_trips=float(m.sum()), od_pairs=int(m.nnz), od_region_share=float(touched.mean()))
    log("  inputs: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()))
    return info


def config_tag(cfg, data) -> str:
    """8 hex digits of the settings a training on ``data`` resolves to (``--save-emb`` / ``--load-emb`` file names)."""
    import hashlib

    from topt_core.srel import recipe

    resolved = recipe.resolve(cfg, data)[0].to_dict()
    return hashlib.sha1(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_city(name, spec, seeds, schemes, variants, stage2, log, config_over, save_dir=None, load_dir=None):
    from topt_core.config import PromptConfig, SrelConfig
    from topt_core.srel import train_srel

    data = load_city(spec)
    log(f"{name}: {data.n} regions, views {data.views()}")
    info = coverage(data, log)
    base_cfg = SrelConfig(device="cpu").replace(**config_over)
    feats = {"raw": raw_features(data)}
    feats["raw+geometry"] = np.concatenate([feats["raw"], geometry(data)], 1)
    feats["contextual"] = contextual(data)
    # the embedding's own derived inputs, straight into Ridge: does SREL keep more than it is given?
    from topt_core.views import derived

    feats["srel-inputs"] = np.concatenate([feats["raw+geometry"], derived.CONTEXT.get(data)], 1)
    runs = {t: {} for t in spec["targets"]}          # target -> method -> [per seed {scheme: metrics}]
    seconds = {}
    for seed in seeds:
        embs = {}
        for vname in variants:
            t0 = time.perf_counter()
            cfg = base_cfg.replace(seed=seed, **VARIANTS[vname])
            stem = f"{name}_{vname}_{seed}_{config_tag(cfg, data)}"       # the resolved settings: a changed default
            saved = Path(load_dir or "") / f"{stem}.npy"                   # never reads an old file
            if load_dir and saved.exists():                      # --load-emb: the embeddings of an earlier run
                embs[vname] = np.load(saved)
                log(f"  seed {seed} srel:{vname} read from {saved}")
                continue
            r = train_srel(data.without_targets(), cfg)
            embs[vname] = r.embeddings
            if save_dir:
                Path(save_dir).mkdir(parents=True, exist_ok=True)
                np.save(Path(save_dir) / f"{stem}.npy", r.embeddings)
            seconds.setdefault(vname, []).append(time.perf_counter() - t0)
            log(f"  seed {seed} srel:{vname} trained in {seconds[vname][-1]:.1f} s ({r.epochs_run} epochs)")
        for target in spec["targets"]:
            y = np.asarray(data.targets[target], dtype=float)
            lab = np.flatnonzero(np.isfinite(y))
            clip = bool(np.all(y[lab] >= 0))
            folds = fold_sets(lab, data.centroids, seed, schemes)
            res = {}
            for m, x in feats.items():
                res[m] = {s: score(y, ridge_oof(x, y, f, clip), lab) for s, f in folds.items()}
            res["knn"] = {s: score(y, knn_oof(data.centroids, y, f), lab) for s, f in folds.items()}
            for vname, emb in embs.items():
                key = "srel" if vname == "default" else f"srel:{vname}"
                res[key] = {s: score(y, ridge_oof(emb, y, f, clip, standardise=False), lab) for s, f in folds.items()}
            if "default" in embs:                  # candidate readout (ablation row): label-free, not the product
                ring = ring_readout(embs["default"], data)
                res["srel+rings2"] = {s: score(y, ridge_oof(ring, y, f, clip, standardise=False), lab)
                                      for s, f in folds.items()}
            for vname in stage2:                       # predict_regions' default on these embeddings
                from topt_core.prompt import run_prompt4re

                key = "stage2" if vname == "default" else f"stage2:{vname}"
                res[key] = {}
                for s in schemes:
                    cfg = PromptConfig(task="generic", protocol=s, seed=seed, folds=10)
                    out = run_prompt4re(embs[vname], data, y, spec["targets"][target], cfg)
                    res[key][s] = {"r2": out.metrics["r2"], "mae": out.metrics["mae"],
                                   "ridge_r2": out.ridge_metrics["r2"], "knn_r2": out.knn_metrics["r2"],
                                   "coverage": out.coverage}
            for m, v in res.items():
                runs[target].setdefault(m, []).append(v)
        if save_dir:                                   # what is done so far survives an interrupted run
            done = {t: {m: (stage2_summary(v) if m.startswith("stage2") else summarise(v)) for m, v in ms.items()}
                    for t, ms in runs.items() if ms}
            (Path(save_dir) / f"{name}_partial.json").write_text(json.dumps(
                {"seeds_done": seeds[:seeds.index(seed) + 1], "cities": {name: done}, "inputs": {name: info}},
                indent=1))
            log(f"  seed {seed} {target}: " + ", ".join(f"{m} {v['random']['r2']:.3f}/{v.get('spatial-blocks', v['random'])['r2']:.3f}"
                                                        for m, v in res.items()))
    out = {t: {m: (stage2_summary(v) if m.startswith("stage2") else summarise(v)) for m, v in ms.items()}
           for t, ms in runs.items()}
    return out, info, {k: float(np.mean(v)) for k, v in seconds.items()}


def markdown(results) -> str:
    lines = []
    for city, targets in results["cities"].items():
        methods = list(next(iter(targets.values())))
        lines.append(f"\n**{city}** ({results['inputs'][city]['regions']} regions): R² random folds / spatial-blocks "
                     f"(mean over seeds {results['seeds'][0]}-{results['seeds'][-1]})\n")
        lines.append("| target | " + " | ".join(methods) + " |")
        lines.append("|---" * (len(methods) + 1) + "|")
        for t, ms in targets.items():
            cells = [f"{ms[m]['random']['r2']:.3f} / {ms[m].get('spatial-blocks', {}).get('r2', float('nan')):.3f}"
                     for m in methods]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BASELINES = ("raw", "raw+geometry", "contextual")


def targets_table(results) -> str:
    """The issues' checks per city x target: SREL against the best label-free baseline, stage 2 against
    max(Ridge on the embedding, label interpolation) on the same folds; random / spatial-blocks."""
    lines = ["| city | target | best label-free baseline | SREL (before: no derived views) | SREL − best | "
             "stage 2 | max(Ridge on SREL, kNN) | stage 2 − max |", "|---|---|---|---|---|---|---|---|"]
    gains = {"srel": [], "stage2": []}
    for city, targets in results["cities"].items():
        for t, ms in targets.items():
            cells = []
            for scheme in results["folds"]:
                best = max(ms[b][scheme]["r2"] for b in BASELINES)
                srel = ms["srel"][scheme]["r2"]
                old = ms.get("srel:no-derived", {}).get(scheme, {}).get("r2", float("nan"))
                cells.append((best, srel, old))
            row = [f"{c[0]:.3f}" for c in cells], [f"{c[1]:.3f} ({c[2]:.3f})" for c in cells], \
                [f"{c[1] - c[0]:+.3f}" for c in cells]
            gains["srel"].append(cells[0][1] - cells[0][0])
            s2 = ms.get("stage2")
            if s2:
                runs = [(s2[sc]["r2"], max(s2[sc]["ridge_r2"], s2[sc]["knn_r2"])) for sc in results["folds"]]
                row += ([f"{a:.3f}" for a, _ in runs], [f"{b:.3f}" for _, b in runs], [f"{a - b:+.3f}" for a, b in runs])
                gains["stage2"].append(runs[0][0] - runs[0][1])
            lines.append(f"| {city} | {t} | " + " | ".join(" / ".join(c) for c in row) + " |")
    lines.append("")
    lines.append(f"Mean over cells, random folds: SREL − best label-free baseline {np.mean(gains['srel']):+.3f}"
                 + (f"; stage 2 − max(Ridge, kNN) {np.mean(gains['stage2']):+.3f}" if gains["stage2"] else "") + ".")
    return "\n".join(lines)


def stage2_summary(per_seed):
    out = {}
    for scheme in per_seed[0]:
        out[scheme] = {k: float(np.mean([r[scheme][k] for r in per_seed])) for k in per_seed[0][scheme]}
    out["r2"], out["mae"] = out["random"]["r2"], out["random"]["mae"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cities", default=None, help="comma list (default: every city in bench/realcity/)")
    p.add_argument("--seeds", default="100-102", help="count, range (100-102) or list")
    p.add_argument("--folds", default="random,spatial-blocks")
    p.add_argument("--variants", default="default", help=f"SREL variants, comma list of {list(VARIANTS)}")
    p.add_argument("--stage2", action="store_true", help="also predict_regions' default on the default embedding")
    p.add_argument("--stage2-variants", default=None,
                   help="comma list of variants (of --variants) whose embeddings stage 2 also runs on (row stage2:<v>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="SrelConfig override for all")
    p.add_argument("--json", default=None)
    p.add_argument("--save-emb", default=None,
                   help="folder to save each embedding in (<city>_<variant>_<seed>_<settings hash>.npy)")
    p.add_argument("--load-emb", default=None, help="folder of saved embeddings to reuse instead of training")
    p.add_argument("--report", nargs="+", default=None, metavar="JSON",
                   help="print the tables of earlier runs' JSON files (merged) and exit")
    args = p.parse_args(argv)
    if args.report:
        merged = None
        for f in args.report:
            r = json.loads(Path(f).read_text())
            if merged is None:
                merged = r
            else:
                for k in ("cities", "inputs", "train_seconds"):
                    merged[k].update(r[k])
        print(markdown(merged))
        print()
        print(targets_table(merged))
        return 0
    sys.path.insert(0, str(ROOT))
    from bench.manhattan import parse_seeds, peak_rss_mb

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    specs = city_specs()
    names = args.cities.split(",") if args.cities else [c for c in specs if c != "manhattan"]
    seeds = parse_seeds(args.seeds)
    schemes = args.folds.split(",")
    variants = args.variants.split(",")
    stage2 = (["default"] if args.stage2 else []) + \
        [v for v in (args.stage2_variants or "").split(",") if v and v != "default"]
    unknown = [v for v in stage2 if v not in variants]
    if unknown:
        p.error(f"--stage2-variants {unknown} must be among --variants {variants}")
    over = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    load0 = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    results = {"seeds": seeds, "folds": schemes, "variants": {v: VARIANTS[v] for v in variants}, "overrides": over,
               "cities": {}, "inputs": {}, "train_seconds": {}, "commit": commit,
               "machine": f"{platform.platform()}, {os.cpu_count()} CPU", "loadavg_before": list(load0)}
    t0 = time.time()
    for name in names:
        res, info, secs = run_city(name, specs[name], seeds, schemes, variants, stage2, log, over, args.save_emb,
                                   args.load_emb)
        results["cities"][name], results["inputs"][name], results["train_seconds"][name] = res, info, secs
    results.update(wall_seconds=time.time() - t0, peak_rss_mb=peak_rss_mb(), loadavg_after=list(os.getloadavg()))
    print(markdown(results))
    print()
    print(targets_table(results))
    print(f"\nwall {results['wall_seconds']:.0f} s, load {load0[0]:.2f} -> {results['loadavg_after'][0]:.2f}, "
          f"SREL train s per seed: {results['train_seconds']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
