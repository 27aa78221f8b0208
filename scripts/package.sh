#!/usr/bin/env bash
# Build dist/topt-<version>.zip (see scripts/package.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 scripts/package.py
