"""SREL at city scale: training time and memory per model on synthetic cities; the front doors too.

    .venv/bin/python -m bench.scale --sizes 1000,5000,10000,50000,100000 --json OUT.json [--mode auto]
    .venv/bin/python -m bench.scale --pipeline [--sizes 10000] [--labels 5000] --json OUT.json

For each size a seeded synthetic city (``bench/city.py``: square grid, 20 POI categories from a
smooth latent field, a gravity-like OD table, 6 land-use shares) is trained once, one model
(restarts=1), on ``--threads`` CPU threads (2), each size in its own process so that peak RSS is
that size's. Writes per size ``{"regions", "mode", "epochs", "train_seconds", "seconds_per_epoch",
"peak_rss_mb", ...}`` under ``"sizes"``. ``--epochs`` bounds training (default: the config's 150;
early stopping may end sooner).

``--pipeline`` times what a user waits for, through ``scripts/qgis_process.sh`` (``pipeline_size``): the
city written as a user's files (regions GeoPackage with a target ``y`` known on ``--labels`` regions,
POI points, ``--od-rows`` OD records as a CSV table; 10 000 regions: ~500 000 POIs, 1 000 000 OD rows),
then ``topt:train_regions`` with the defaults (+ OUTPUT_LINKS), then ``topt:predict_regions`` (+ report
and evidence layer) twice with the same text-vector cache: cold (``TOPT_CACHE_DIR`` an empty folder:
nothing cached, the text encoder's weights hashed afresh) and warm. ``--text-fields`` adds a cold/warm
pair with ``TEXT_FIELDS=district`` (one of ~100 district names per region). Writes ``pipeline[]``
rows ``{"regions", "train_wall_s", "predict_cold_wall_s", "predict_warm_wall_s", "peak_rss_mb", ...}``
(peak RSS: the largest of the qgis_process runs, each measured with ``os.wait4``); each run's log is
kept in the work folder (``--workdir``, default a temporary folder).
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

os.environ.setdefault("PROJ_DATA", "/usr/share/proj")     # geopandas/pyproj writing the city's files

ROOT = Path(__file__).resolve().parents[1]


def one_size(n: int, mode: str, epochs: int, threads: int, seed: int, device: str) -> dict:
    """Train one model on an n-region city in this process; the result row."""
    sys.path.insert(0, str(ROOT))
    from bench.city import make_city, region_data
    from topt_core.config import SrelConfig, resolve_attention
    from topt_core.srel import train_srel

    t0 = time.perf_counter()
    data = region_data(make_city(n, seed=seed))
    build_s = time.perf_counter() - t0
    cfg = SrelConfig(restarts=1, attention=mode, threads=threads, device=device, seed=seed,
                     **({"epochs": epochs} if epochs else {}))

    class Rep:
        texts = []

        def set_progress(self, p): pass
        def set_text(self, t): self.texts.append(t)
        def info(self, t): print(t, file=sys.stderr, flush=True)
        def warning(self, t): print("WARNING:", t, file=sys.stderr, flush=True)
        def is_canceled(self): return False

    res = train_srel(data, cfg, Rep())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"regions": n, "mode": resolve_attention(cfg, n), "epochs": res.epochs_run,
            "train_seconds": round(res.seconds, 2), "seconds_per_epoch": round(res.seconds / max(res.epochs_run, 1), 4),
            "peak_rss_mb": round(rss, 1), "city_build_seconds": round(build_s, 2), "od_pairs": int(data.mobility.nnz),
            "pois": int(data.poi_counts.sum()), "device": str(res.device), "stopped_early": res.stopped_early,
            "final_loss": float(res.history[-1])}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def timed(cmd, env, log_path) -> dict:
    """Run ``cmd`` (its output to ``log_path``); wall seconds, return code and the child's peak RSS (MB)."""
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": round(time.perf_counter() - t0, 1), "rc": proc.returncode,
            "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1)}


def write_pipeline_city(n: int, folder: Path, seed: int, labels: int, od_rows: int, pois_per_region: float) -> dict:
    """The synthetic city as a user's files, the regions with a target ``y`` on ``labels`` regions (the
    others NULL) and a ``district`` name (blocks of about n/100 regions)."""
    import geopandas as gpd
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from bench.city import make_city, write_files

    city = make_city(n, seed=seed, od_rows=od_rows, pois_per_region=pois_per_region)
    paths = write_files(city, folder, seed)
    reg = gpd.read_file(paths["regions"], layer="regions")
    rng = np.random.default_rng(seed + 7)
    y = np.clip(np.round(np.expm1(1.5 * np.asarray(city["truth"])) * 20 + rng.poisson(5, n)), 0, None).astype(float)
    known = np.zeros(n, bool)
    known[rng.choice(n, size=min(labels, n), replace=False)] = True
    reg["y"] = np.where(known, y, np.nan)
    side = int(np.ceil(np.sqrt(n)))
    block = max(1, side // 10)
    ij = city["ij"]
    reg["district"] = [f"District {chr(65 + (i // block) % 26)}{j // block}" for i, j in ij]
    reg.to_file(paths["regions"], layer="regions", driver="GPKG")
    return {k: str(v) for k, v in paths.items()} | {"pois_written": int(city["poi"].sum()),
                                                     "od_rows_written": int(len(city["od_records"][0]))}


def pipeline_size(n: int, a) -> dict:
    """One size through the front doors: write the city, train, predict cold and warm (``--pipeline``)."""
    import shutil
    import tempfile

    work = Path(a.workdir or tempfile.mkdtemp(prefix=f"topt-pipeline-{n}-")) / f"city_{n}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    qp = ROOT / "scripts" / "qgis_process.sh"
    row = {"regions": n, "labels": min(a.labels, n), "workdir": str(work)}
    t0 = time.perf_counter()
    files = write_pipeline_city(n, work, a.seed, a.labels, a.od_rows or 100 * n, a.pois_per_region)
    row["city_write_s"] = round(time.perf_counter() - t0, 1)
    row.update({"pois": files["pois_written"], "od_rows": files["od_rows_written"]})
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(work / "qgis-profile"))
    env.pop("QGIS_PREFIX_PATH", None)
    env.pop("TOPT_DEVICE", None)
    emb, model = work / "emb.gpkg", work / "model"
    train = ["run", "topt:train_regions", "--", f"REGIONS={files['regions']}|layername=regions",
             "REGION_ID_FIELD=region_id", f"POIS={files['pois']}|layername=pois", "POI_CATEGORY_FIELD=category",
             f"MOBILITY={files['od']}", "MOBILITY_ORIGIN_FIELD=origin_id",
             "MOBILITY_DESTINATION_FIELD=destination_id", "MOBILITY_COUNT_FIELD=trips", f"DEVICE={a.device}",
             f"SEED={a.seed}", f"OUTPUT={emb}", f"OUTPUT_MODEL={model}"]
    if not a.no_links:
        train.append(f"OUTPUT_LINKS={work / 'links.gpkg'}")
    print(f"[{n}] city written in {row['city_write_s']} s; training through qgis_process", file=sys.stderr, flush=True)
    r = timed([qp, *train], env, work / "train.log")
    row.update({"train_wall_s": r["wall_s"], "train_rc": r["rc"], "train_peak_rss_mb": r["peak_rss_mb"]})
    rss = [r["peak_rss_mb"]]
    if r["rc"] != 0:
        row["error"] = f"train_regions failed (rc {r['rc']}), see {work / 'train.log'}"
        return row
    runs = [("cold", "cache", []), ("warm", "cache", [])]
    if a.text_fields:
        runs += [("text_cold", "cache-text", ["TEXT_FIELDS=district"]), ("text_warm", "cache-text",
                                                                          ["TEXT_FIELDS=district"])]
    for tag, cache, extra in runs:
        env_p = dict(env, TOPT_CACHE_DIR=str(work / cache))
        if tag.endswith("cold") and (work / cache).exists():
            shutil.rmtree(work / cache)
        out = work / f"pred_{tag}"
        pred = ["--json", "run", "topt:predict_regions", "--", f"INPUT={emb}", "TARGET_FIELD=y", f"MODEL={model}",
                f"DEVICE={a.device}", *extra, f"OUTPUT={out}.gpkg", f"OUTPUT_REPORT={out}.html",
                f"OUTPUT_EVIDENCE={out}_evidence.gpkg"]
        print(f"[{n}] predict_regions {tag}", file=sys.stderr, flush=True)
        r = timed([qp, *pred], env_p, work / f"predict_{tag}.log")
        rss.append(r["peak_rss_mb"])
        row[f"predict_{tag}_wall_s"], row[f"predict_{tag}_rc"] = r["wall_s"], r["rc"]
        try:
            text = (work / f"predict_{tag}.log").read_text(encoding="utf-8", errors="replace")
            res = json.loads(text[text.index("{"):])["results"]
            row[f"predict_{tag}_r2"] = res.get("R2")
            row[f"predict_{tag}_ridge_r2"] = res.get("RIDGE_R2")
        except (ValueError, KeyError, OSError):
            row.setdefault("error", f"predict_regions {tag} failed (rc {r['rc']}), see {work}/predict_{tag}.log")
    row["peak_rss_mb"] = max(rss)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="default 1000,5000,10000 (SREL) or 10000 (--pipeline)")
    p.add_argument("--mode", default="auto", choices=("auto", "dense", "sparse"))
    p.add_argument("--epochs", type=int, default=0, help="0: the config's default (150)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)   # child process: one size
    p.add_argument("--pipeline", action="store_true", help="time train/predict through qgis_process instead")
    p.add_argument("--labels", type=int, default=5000, help="--pipeline: regions with a known target")
    p.add_argument("--od-rows", type=int, default=0, help="--pipeline: OD records (0: 100 per region)")
    p.add_argument("--pois-per-region", type=float, default=50.0, help="--pipeline: mean POIs per region")
    p.add_argument("--text-fields", action="store_true", help="--pipeline: also predict with TEXT_FIELDS=district")
    p.add_argument("--no-links", action="store_true", help="--pipeline: train without OUTPUT_LINKS")
    p.add_argument("--workdir", default=None, help="--pipeline: where the files and logs go (default: a temp folder)")
    a = p.parse_args(argv)
    if a.sizes is None:
        a.sizes = "10000" if a.pipeline else "1000,5000,10000"
    if a.pipeline:
        return pipeline_main(a)
    if a.one is not None:
        print(json.dumps(one_size(a.one, a.mode, a.epochs, a.threads, a.seed, a.device)))
        return 0
    rows = []
    load0 = os.getloadavg()
    for n in [int(x) for x in a.sizes.split(",") if x]:
        t0 = time.time()
        cmd = [sys.executable, "-m", "bench.scale", "--one", str(n), "--mode", a.mode, "--epochs", str(a.epochs),
               "--threads", str(a.threads), "--seed", str(a.seed), "--device", a.device]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            row = {"regions": n, "mode": a.mode, "error": out.stderr.strip().splitlines()[-1:]}
        else:
            row = json.loads(out.stdout.strip().splitlines()[-1])
        row["wall_seconds"] = round(time.time() - t0, 1)
        row["loadavg_after"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"sizes": rows, "machine": f"{platform.platform()}, {os.cpu_count()} CPU", "threads": a.threads,
              "loadavg_before": list(load0), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


def pipeline_main(a) -> int:
    def uptime() -> str:
        try:
            return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "commit": _git_commit(),
              "machine": f"{platform.platform()}, {os.cpu_count()} CPU", "uptime_before": uptime(),
              "loadavg_before": list(os.getloadavg()), "device": a.device, "pipeline": []}
    for n in [int(x) for x in a.sizes.split(",") if x]:
        row = pipeline_size(n, a)
        row["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        result["pipeline"].append(row)
        print(json.dumps(row), flush=True)
    result["uptime_after"] = uptime()
    result["date_end"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
