#!/usr/bin/env bash
# Run the test suite (core, pytest-qgis and qgis_process end-to-end) with the
# venv and the QGIS environment. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
exec .venv/bin/python -m pytest "$@"
