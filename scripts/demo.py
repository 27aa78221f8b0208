"""`make demo`: train SREL and predict crime on the bundled Manhattan sample through
the real ``qgis_process`` binary, then print a short human summary.

Output goes to ``demo-output/`` (embeddings layer, saved model, predictions,
HTML report). Uses the default text encoder (MiniLM, shipped as a pip package).
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample" / "manhattan.gpkg"
OUT = ROOT / "demo-output"
WRAPPER = ROOT / "scripts" / "qgis_process.sh"


def qgis_run(alg: str, params: dict) -> tuple[dict, float]:
    args = [str(WRAPPER), "--json", "run", alg, "--"] + [f"{k}={v}" for k, v in params.items()]
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"demo: {alg} failed (rc {proc.returncode})")
    return json.loads(proc.stdout[proc.stdout.index("{"):]), wall


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    lu_fields = ";".join(f"lu_{i:02d}" for i in range(11))
    print(f"ToPT demo: Manhattan sample ({SAMPLE.relative_to(ROOT)}) through qgis_process", flush=True)
    train, t_train = qgis_run("topt:train_regions", {
        "REGIONS": f"{SAMPLE}|layername=regions", "REGION_ID_FIELD": "region_id",
        "POIS": f"{SAMPLE}|layername=pois", "POI_CATEGORY_FIELD": "category",
        "MOBILITY": f"{SAMPLE}|layername=od", "MOBILITY_ORIGIN_FIELD": "origin_id",
        "MOBILITY_DESTINATION_FIELD": "destination_id", "MOBILITY_COUNT_FIELD": "trips",
        "LANDUSE_FIELDS": lu_fields, "SEED": 42, "DEVICE": os.environ.get("TOPT_DEVICE", "auto"),
        "OUTPUT": OUT / "embeddings.gpkg", "OUTPUT_MODEL": OUT / "model", "OUTPUT_LINKS": OUT / "links.gpkg"})
    r = train["results"]
    pred, t_pred = qgis_run("topt:predict_regions", {
        "INPUT": OUT / "embeddings.gpkg", "TARGET_FIELD": "crime_count", "TASK": "crime",
        "MODEL": OUT / "model", "OUTPUT": OUT / "predictions.gpkg", "OUTPUT_REPORT": OUT / "report.html",
        "OUTPUT_EVIDENCE": OUT / "evidence.gpkg"})
    p = pred["results"]
    print("")
    print("Stage 1 (SREL, topt:train_regions)")
    print(f"  regions      {int(r['REGIONS'])}")
    restarts = json.loads((Path(r["OUTPUT_MODEL"]) / "config.json").read_text())["config"].get("restarts", 1)
    print(f"  epochs       {int(r['EPOCHS_RUN'])}" + (f" per restart, {restarts} restarts" if restarts > 1 else ""))
    print(f"  device       {r['DEVICE']} ({r['DEVICE_REASON']})")
    print(f"  wall time    {t_train:.1f} s (training {float(r['TRAIN_SECONDS']):.1f} s)")
    print(f"  embeddings   {Path(r['OUTPUT']).relative_to(ROOT) if str(r['OUTPUT']).startswith(str(ROOT)) else r['OUTPUT']}")
    print(f"  model        {Path(r['OUTPUT_MODEL']).relative_to(ROOT)}")
    print(f"  links        {OUT.relative_to(ROOT) / 'links.gpkg'} (each region's 5 strongest attention partners)")
    print("Stage 2 (Prompt4RE, topt:predict_regions, crime, 10 shuffled folds)")
    print(f"  MAE {p['MAE']:.1f}   RMSE {p['RMSE']:.1f}   R² {p['R2']:.3f}   "
          f"(Ridge on the same folds: R² {p['RIDGE_R2']:.3f})")
    print(f"  90 % intervals: {100 * p['COVERAGE']:.0f} % of labelled regions inside, mean width {p['WIDTH']:.0f}")
    print(f"  wall time    {t_pred:.1f} s")
    print(f"  predictions  {OUT.relative_to(ROOT) / 'predictions.gpkg'}")
    print(f"  evidence     {OUT.relative_to(ROOT) / 'evidence.gpkg'} (each region's top labelled neighbours)")
    print(f"  report       {OUT.relative_to(ROOT) / 'report.html'} (maps, intervals, settings)")


if __name__ == "__main__":
    main()
