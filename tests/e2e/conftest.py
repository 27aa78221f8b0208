"""Helpers to run the real qgis_process binary in a subprocess with a throwaway profile."""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "scripts" / "qgis_process.sh"
SAMPLE = ROOT / "resources" / "sample" / "manhattan.gpkg"


class QgisProcess:
    def __init__(self, profile: Path, extra_env=None):
        self.profile = profile
        self.env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(profile), **(extra_env or {}))
        # pytest-qgis points these at its own profile; the subprocess must use ours
        self.env.pop("QGIS_PREFIX_PATH", None)

    def __call__(self, *args, timeout=600, check=True):
        proc = subprocess.run([str(WRAPPER), *map(str, args)], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
        if check and proc.returncode != 0:
            raise AssertionError(f"qgis_process {' '.join(map(str, args))} -> rc {proc.returncode}\n"
                                 f"STDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
        return proc

    def run_json(self, alg, params: dict, timeout=600):
        args = ["--json", "run", alg, "--"] + [f"{k}={v}" for k, v in params.items()]
        proc = self(*args, timeout=timeout)
        return json.loads(proc.stdout[proc.stdout.index("{"):])


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory):
    return QgisProcess(tmp_path_factory.mktemp("qgis-profile"))


@pytest.fixture(scope="session")
def sample_gpkg():
    if not SAMPLE.exists():
        pytest.fail(f"sample data missing: {SAMPLE} (built by scripts/build_sample.py)")
    return SAMPLE
