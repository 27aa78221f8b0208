"""Architecture guards: the engine stays free of QGIS, the plugin entry stays light."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("qgis", "PyQt4", "PyQt5", "PyQt6", "osgeo", "processing")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_topt_core_never_imports_qgis_pyqt_or_osgeo():
    offenders = []
    files = sorted((ROOT / "topt_core").rglob("*.py"))
    assert files, "topt_core has no modules?"
    for path in files:
        for line, name in _imports(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_guard_detects_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom qgis.core import QgsVectorLayer\n")
    assert [n for _, n in _imports(bad) if n.split(".")[0] in FORBIDDEN] == ["qgis.core"]


def test_plugin_entry_imports_nothing_heavy():
    heavy = {"torch", "transformers", "torch_geometric", "sklearn", "geopandas"}
    for rel in ("__init__.py", "plugin.py", "processing_provider/provider.py",
                "processing_provider/algorithms/base.py"):
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module]
        assert not {x.split(".")[0] for x in names} & heavy, f"{rel} imports heavy modules at load time: {names}"
