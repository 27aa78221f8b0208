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


def _absolute_imports(path: Path, package: str):
    """(line, module) for every import in ``path`` anywhere in the file (module level or inside
    functions), relative imports resolved against ``package`` (the module's own package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parts = package.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for alias in node.names:                  # ``from .. import srel`` names a module too
                yield node.lineno, f"{mod}.{alias.name}"


def _views_importing_srel(folder: Path, package: str):
    offenders = []
    for path in sorted(folder.rglob("*.py")):
        sub = path.relative_to(folder).with_suffix("").parts
        pkg = ".".join([package, *sub[:-1]])
        hits = {}
        for line, name in _absolute_imports(path, pkg):
            if name == "topt_core.srel" or name.startswith("topt_core.srel."):
                hits.setdefault(line, name)
        offenders += [f"{path.relative_to(folder.parent)}:{line} imports {hits[line]}" for line in sorted(hits)]
    return offenders


def test_views_never_import_srel():
    """The data layer (views) must not depend on stage 1: ``srel`` imports ``views``, not the reverse
    (the losses the views name live in ``topt_core.objectives``)."""
    folder = ROOT / "topt_core" / "views"
    assert sorted(folder.glob("*.py")), "topt_core/views has no modules?"
    offenders = _views_importing_srel(folder, "topt_core.views")
    assert not offenders, "\n".join(offenders)


def test_objectives_stay_free_of_stage_1_and_the_views():
    """``topt_core.objectives`` (the loss functions the views name) imports neither ``srel`` nor ``views``,
    so the views can use it without a cycle."""
    found = [f"objectives.py:{line} imports {name}"
             for line, name in _absolute_imports(ROOT / "topt_core" / "objectives.py", "topt_core")
             if name.split(".")[:2] in (["topt_core", "srel"], ["topt_core", "views"])]
    assert not found, "\n".join(found)


def test_views_guard_detects_srel_imports(tmp_path):
    views = tmp_path / "views"
    views.mkdir()
    (views / "ok.py").write_text("from ..objectives import od_kl\nfrom . import scaling\nimport numpy\n")
    (views / "bad.py").write_text(
        "from ..srel.losses import od_kl\n"
        "def f():\n    from ..srel import attention\n"
        "def g():\n    import topt_core.srel.model\n"
        "from .. import srel\n")
    found = _views_importing_srel(views, "topt_core.views")
    assert [f.split(":")[1].split()[0] for f in found] == ["1", "3", "5", "6"], found
    assert all(f.startswith("views/bad.py") for f in found), found


MODE_NAMES = {"dense", "sparse"}
MODE_HOMES = ("topt_core/srel/modes/", "topt_core/config.py")    # the modes themselves, and "auto" -> a mode


def _mode_comparisons(path: Path):
    """(line, source) of every comparison in ``path`` with "dense"/"sparse" as an operand (``==``, ``!=``,
    ``in``, also inside a tuple/list/set), i.e. a branch on the attention mode's name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def names(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        return set()

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(names(x) & MODE_NAMES for x in [node.left, *node.comparators]):
            yield node.lineno, ast.get_source_segment(path.read_text(encoding="utf-8"), node)


def test_no_branch_on_the_attention_mode_name_outside_the_modes():
    """The attention mode is an object (``topt_core/srel/modes/``) resolved once, not a string threaded
    through the code: nothing outside the mode modules and ``config.py`` compares with "dense"/"sparse"."""
    offenders = []
    for folder in ("topt_core", "processing_provider", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(MODE_HOMES):
                continue
            offenders += [f"{rel}:{line}: {src}" for line, src in _mode_comparisons(path)]
    assert not offenders, "\n".join(offenders)


def test_mode_guard_detects_comparisons(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('if mode == "sparse":\n    pass\nx = m in ("dense", "auto")\ny = "dense" != z\n'
                   'ok = {"mode": "sparse"}\nchoices = ("dense", "sparse")\n')
    assert [line for line, _ in _mode_comparisons(bad)] == [1, 3, 4]


def test_every_attention_setting_names_a_mode_module():
    from topt_core.config import ATTENTION_MODES
    from topt_core.srel import modes

    assert set(ATTENTION_MODES) - {"auto"} == set(modes.REGISTRY)
    for name, mode in modes.REGISTRY.items():
        assert mode.name == name and (ROOT / "topt_core" / "srel" / "modes" / f"{name}.py").exists()
