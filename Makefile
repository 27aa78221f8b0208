# Quick start: `make demo` (train + predict on the bundled Manhattan sample
# through qgis_process) and `make test` (the whole suite). Both set up what is
# missing first (scripts/setup.sh is idempotent and takes ~1 s when done).
SHELL := /bin/bash
.PHONY: setup demo test test-core package bench clean

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test: setup
	@scripts/run_tests.sh

test-core: setup
	@scripts/run_tests.sh tests/core tests/test_architecture.py

package:
	@scripts/package.sh

bench: setup
	@. scripts/env.sh && .venv/bin/python -m bench.manhattan --seeds 100-109 --front-door layers --no-ablations --prompt4re --ablation-seeds 3 --head-seeds 1 --json bench/last.json

clean:
	rm -rf .qgis-profile .qgis-plugins dist .pytest_cache
