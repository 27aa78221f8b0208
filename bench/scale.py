"""SREL at city scale: training time and memory per model on synthetic cities.

    .venv/bin/python -m bench.scale --sizes 1000,5000,10000,50000,100000 --json OUT.json [--mode auto]

For each size a seeded synthetic city (``bench/city.py``: square grid, 20 POI categories from a
smooth latent field, a gravity-like OD table, 6 land-use shares) is trained once, one model
(restarts=1), on ``--threads`` CPU threads (2), each size in its own process so that peak RSS is
that size's. Writes per size ``{"regions", "mode", "epochs", "train_seconds", "seconds_per_epoch",
"peak_rss_mb", ...}`` under ``"sizes"``. ``--epochs`` bounds training (default: the config's 150;
early stopping may end sooner).
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,5000,10000")
    p.add_argument("--mode", default="auto", choices=("auto", "dense", "sparse"))
    p.add_argument("--epochs", type=int, default=0, help="0: the config's default (150)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)   # child process: one size
    a = p.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
