"""Data flows one way, and the package tree is the map.

``STAGES`` is the one ordered list of the packages of ``cxr_tf`` (earlier stages first); the tree
must hold exactly these packages, so a new one has to be placed here, and the package map
(docs/reference/architecture.md) must name them in this order. A module may import its own
stage and earlier ones only (imports inside functions included), and the imports within a stage
form no circle. The dataset folders (``datasets/<name>/``, shipped as ``cxr_tf.datasets``) are a
stage of their own.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cxr_tf"
DATASETS = REPO / "datasets"

STAGES = ["core", "vocab", "dicom", "imaging", "label", "sources", "synth", "datasets", "records", "pipeline",
          "models", "evaluation", "training", "explain", "search", "federated", "interop", "studies", "cli"]
# ``cxr_tf.load_model`` is offered at the top level (importing Keras only when called), so the
# package root reaches forward to the models: the one deliberate exception.
EXCEPTIONS = {("cxr_tf", "cxr_tf.models")}


def _excepted(module: str, imported: str) -> bool:
    return any(module == a and (imported == b or imported.startswith(b + ".")) for a, b in EXCEPTIONS)


def _name(path: Path, root: Path, prefix: tuple) -> str:
    parts = prefix + path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    out = {_name(p, PACKAGE.parent, ()): p for p in PACKAGE.rglob("*.py")}
    if DATASETS.is_dir():
        out.update({_name(p, DATASETS, ("cxr_tf", "datasets")): p for p in DATASETS.rglob("*.py")})
    return out


def _stage(module: str) -> int:
    if module == "cxr_tf":
        return -1
    top = module.split(".")[1]
    if top not in STAGES:
        raise AssertionError(f"{module}: cxr_tf.{top} is in no stage of tests/test_import_order.py: place it")
    return STAGES.index(top)


def _reexports(modules: dict) -> dict[tuple[str, str], str]:
    """(package, name) -> the submodule a package's ``__init__`` takes ``name`` from."""
    out = {}
    for module, path in modules.items():
        if path.name != "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(module + "."):
                for a in node.names:
                    out[(module, a.asname or a.name)] = node.module
    return out


def _imports(module: str, modules: dict, reexports: dict) -> set[str]:
    """cxr_tf modules a module imports anywhere in its file; a name a package re-exports counts
    as an import of the submodule it comes from."""
    found = set()
    for node in ast.walk(ast.parse(modules[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cxr_tf")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxr_tf"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                found.add(full if full in modules else reexports.get((node.module, a.name), node.module))
    found.discard(module)
    return {m for m in found if m in modules}


MODULES = _modules()
REEXPORTS = _reexports(MODULES)


def test_the_tree_is_the_stage_list():
    tops = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert tops == set(STAGES) - {"datasets"}, (sorted(tops - set(STAGES)), sorted(set(STAGES) - tops - {"datasets"}))
    single = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(single) <= 3, single                         # a handful of modules at the top, at most


def test_the_package_map_is_the_stage_list():
    """The package map (docs/reference/architecture.md: stage, package, what it does) names the same
    packages in the same order."""
    import re
    text = (REPO / "docs" / "reference" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("## The map", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[2] for line in table.splitlines() if line.startswith("| ") and "`" in line]
    named = [re.findall(r"cxr_tf\.(\w+)", row)[0] for row in rows]
    assert named == STAGES


def test_no_module_is_too_long():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_from_a_later_stage(module):
    mine = _stage(module)
    later = sorted(m for m in _imports(module, MODULES, REEXPORTS)
                   if _stage(m) > mine and not _excepted(module, m))
    assert not later, (f"{module} ({STAGES[mine] if mine >= 0 else 'root'}) imports later stage(s): "
                       + ", ".join(f"{m} ({STAGES[_stage(m)]})" for m in later))


def test_no_circle_within_a_stage():
    graph = {m: {i for i in _imports(m, MODULES, REEXPORTS) if _stage(i) == _stage(m) and not _excepted(m, i)}
             for m in MODULES}
    state, circles = {}, []

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                circles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_pipeline_needs_neither_the_writer_nor_pil(records_dir):
    """The pipeline reads records without the writer's stack: with PIL made unimportable
    (TensorFlow 2.21 itself imports PIL through keras._tf_keras when it can), cxr_tf.pipeline
    imports, reads a batch, and never loads prepare, sources, the writer or imaging."""
    code = ("import sys\nsys.modules['PIL'] = None\n"
            "from cxr_tf.pipeline import make_dataset\n"
            f"x, y = next(iter(make_dataset({str(records_dir)!r}, 'val', batch_size=4, image_size=32)))\n"
            "assert x.shape == (4, 32, 32, 1), x.shape\n"
            "loaded = [m for m in ('cxr_tf.records.prepare', 'cxr_tf.sources', 'cxr_tf.records.writer',"
            " 'cxr_tf.imaging') if m in sys.modules]\nassert not loaded, loaded\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.parametrize("module,absent", [
    ("cxr_tf", ["tensorflow", "keras", "pydicom"]),
    ("cxr_tf.training.config", ["tensorflow", "keras", "PIL"]),
    ("cxr_tf.sources", ["tensorflow", "keras"]),
    ("cxr_tf.label", ["tensorflow", "keras", "PIL"]),
])
def test_light_imports(module, absent):
    code = (f"import sys, {module}\n"
            f"loaded = [m for m in {absent!r} if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
