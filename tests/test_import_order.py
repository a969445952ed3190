"""Data flows one way: no module imports a module of a later stage (imports inside functions
included). The stage order is written once, here; a new module must be placed in it."""

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cxr_tf"

# Earlier stages first. A module may import its own stage and earlier ones only.
STAGES = [
    ("base", ["cxr_tf", "cxr_tf.errors", "cxr_tf.atomic", "cxr_tf.progress", "cxr_tf.parallel",
              "cxr_tf.cards", "cxr_tf.tfrecord"]),
    ("vocabulary", ["cxr_tf.findings", "cxr_tf.presets", "cxr_tf.metrics", "cxr_tf.crosswalk"]),
    ("config", ["cxr_tf.config"]),
    ("manifest", ["cxr_tf.manifest", "cxr_tf.splits"]),
    ("imaging", ["cxr_tf.imaging", "cxr_tf.imaging.*"]),
    ("dicom", ["cxr_tf.deid", "cxr_tf.dicomtool"]),
    ("label", ["cxr_tf.label", "cxr_tf.label.*"]),
    ("sources", ["cxr_tf.sources", "cxr_tf.sources.*", "cxr_tf.synth", "cxr_tf.synth.*"]),
    ("stats", ["cxr_tf.stats"]),
    ("records", ["cxr_tf.records", "cxr_tf.recordsdir", "cxr_tf.partition"]),
    ("prepare", ["cxr_tf.prepare", "cxr_tf.demo"]),
    ("pipeline", ["cxr_tf.pipeline"]),
    ("models", ["cxr_tf.models", "cxr_tf.models.*", "cxr_tf.losses", "cxr_tf.optimizers"]),
    ("rundir", ["cxr_tf.rundir"]),
    ("train", ["cxr_tf.distribute", "cxr_tf.callbacks", "cxr_tf.train", "cxr_tf.selftrain"]),
    ("evaluate", ["cxr_tf.evaluate", "cxr_tf.plots", "cxr_tf.predict", "cxr_tf.ensemble"]),
    ("explain", ["cxr_tf.explain", "cxr_tf.explain.*"]),
    ("localize", ["cxr_tf.localize"]),
    ("search", ["cxr_tf.tune_space", "cxr_tf.tune", "cxr_tf.federated", "cxr_tf.federated.*"]),
    ("export", ["cxr_tf.export", "cxr_tf.importer"]),
    ("reproduce", ["cxr_tf.reports", "cxr_tf.study", "cxr_tf.reproduce"]),
    ("tfds", ["cxr_tf.tfds", "cxr_tf.tfds.*"]),
    ("cli", ["cxr_tf.cli", "cxr_tf.cli.*"]),
]
# The one deliberate exception: ``cxr_tf.load_model`` is offered at the top level (importing Keras
# only when called), so the package root reaches forward to the models.
EXCEPTIONS = {("cxr_tf", "cxr_tf.models")}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _stage(module: str) -> int:
    for i, (_, patterns) in enumerate(STAGES):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return i
    raise AssertionError(f"{module} is in no stage of tests/test_import_order.py: place it")


def _imports(path: Path, modules: dict) -> set[str]:
    """cxr_tf modules imported anywhere in a file (``from cxr_tf.x import y`` counts as
    ``cxr_tf.x.y`` when that is a module, else ``cxr_tf.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cxr_tf")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxr_tf"):
            for a in node.names:
                found.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
    return found


def test_every_module_has_a_stage():
    for module in _modules():
        _stage(module)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_import_from_a_later_stage(module):
    modules = _modules()
    mine = _stage(module)
    later = sorted(m for m in _imports(modules[module], modules)
                   if _stage(m) > mine and (module, m) not in EXCEPTIONS)
    assert not later, (f"{module} (stage {STAGES[mine][0]}) imports later stage(s): "
                       + ", ".join(f"{m} ({STAGES[_stage(m)][0]})" for m in later))


def test_pipeline_needs_neither_the_writer_nor_pil(records_dir):
    """The pipeline reads records without the writer's stack: with PIL made unimportable
    (TensorFlow 2.21 itself imports PIL through keras._tf_keras when it can), cxr_tf.pipeline
    imports, reads a batch, and never loads prepare, sources, records or imaging."""
    code = ("import sys\nsys.modules['PIL'] = None\n"
            "from cxr_tf.pipeline import make_dataset\n"
            f"x, y = next(iter(make_dataset({str(records_dir)!r}, 'val', batch_size=4, image_size=32)))\n"
            "assert x.shape == (4, 32, 32, 1), x.shape\n"
            "loaded = [m for m in ('cxr_tf.prepare', 'cxr_tf.sources', 'cxr_tf.records', 'cxr_tf.imaging')"
            " if m in sys.modules]\nassert not loaded, loaded\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.parametrize("module,absent", [
    ("cxr_tf", ["tensorflow", "keras", "pydicom"]),
    ("cxr_tf.config", ["tensorflow", "keras", "PIL"]),
    ("cxr_tf.sources", ["tensorflow", "keras"]),
])
def test_light_imports(module, absent):
    code = (f"import sys, {module}\n"
            f"loaded = [m for m in {absent!r} if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
