"""Build the installable plugin zip (QGIS "Install from ZIP"): dist/topt-<version>.zip.

The zip's top folder is ``topt`` (the plugin name QGIS enables), and it holds
only what runs inside QGIS: no tests, benchmarks, scripts, CI files, caches or venv.
Files come from ``git ls-files`` when available so nothing untracked slips in.
"""
import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXCLUDE_DIRS = ("tests/", "bench/", "scripts/", ".ci/", ".github/", "dist/", ".venv/", ".qgis-profile/",
                ".qgis-plugins/", "demo-output/")
EXCLUDE_FILES = {".gitignore", ".gitattributes", "Makefile", "pytest.ini", "requirements.txt"}


def plugin_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    for name in sorted(names):
        if name.startswith(EXCLUDE_DIRS) or name in EXCLUDE_FILES or "__pycache__" in name or name.endswith(".pyc"):
            continue
        if (ROOT / name).is_file():
            yield name


def main() -> Path:
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    version = meta["general"]["version"]
    out = ROOT / "dist" / f"topt-{version}.zip"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in plugin_files():
            zf.write(ROOT / name, f"topt/{name}")
    os.replace(tmp, out)
    print(out)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
