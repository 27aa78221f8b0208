#!/usr/bin/env bash
# qgis_process with the topt plugin and the project venv, headless.
# Usage: scripts/qgis_process.sh run topt:train_regions -- REGIONS=in.gpkg OUTPUT=out.gpkg
# QGIS_CUSTOM_CONFIG_PATH may point at another profile folder (tests use a temporary one).
set -eu
. "$(dirname "$0")/env.sh"
export QGIS_CUSTOM_CONFIG_PATH="${QGIS_CUSTOM_CONFIG_PATH:-$TOPT_ROOT/.qgis-profile}"
ini="$QGIS_CUSTOM_CONFIG_PATH/profiles/default/QGIS/QGIS3.ini"
# qgis_process only loads plugins enabled in the profile; write the flag directly
# (`plugins enable` returns 1 when already enabled and costs a second start).
if ! grep -qs '^topt=true' "$ini"; then
  mkdir -p "$(dirname "$ini")"
  if grep -qs '^\[PythonPlugins\]' "$ini"; then
    sed -i 's/^\[PythonPlugins\]/[PythonPlugins]\ntopt=true/' "$ini"
  else
    printf '\n[PythonPlugins]\ntopt=true\n' >> "$ini"
  fi
fi
# Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which 3.22 rejects.
BIN=/usr/bin/qgis_process.bin
[ -x "$BIN" ] || BIN=$(command -v qgis_process)
exec "$BIN" "$@"
