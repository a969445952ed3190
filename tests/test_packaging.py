"""Packaging: every package is listed in setup.cfg, and the cards ship inside the wheel."""

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cxr_tf.core import cards

REPO = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_package():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    tree = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "cxr_tf").rglob("__init__.py")}
    datasets = {".".join(("cxr_tf", *p.parent.relative_to(REPO).parts))
                for p in (REPO / "datasets").rglob("__init__.py")}
    assert tree | datasets | {"cxr_tf.reproductions"} == listed
    data = cfg["options.package_data"]
    assert {f"cxr_tf.datasets.{name}" for name in cards.available("datasets")} <= set(data)


def test_cards_load():
    assert "chestxray14" in cards.available("datasets")
    assert {"chexnet", "chestxray8"} <= set(cards.available("reproductions"))
    card = cards.dataset_card("chestxray14")
    assert card["expected"]["images"] == 112120 and len(card["findings"]) == 14
    chexnet = cards.reproduction("chexnet")
    assert set(chexnet["reference"]["auroc"]) == set(card["findings"])
    with pytest.raises(Exception, match="available"):
        cards.dataset_card("no_such_dataset")


def test_wheel_ships_cards_and_console_script(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        pytest.fail(res.stderr[-2000:])
    wheel = next(tmp_path.glob("cxr_tf-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in cards.available("datasets"):
        for part in ("card.toml", "source.py", "phantom.py", "__init__.py"):
            assert f"cxr_tf/datasets/{name}/{part}" in names, (name, part)
    assert "cxr_tf/reproductions/chexnet.toml" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cxr-tf = cxr_tf.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


# ---- every third-party import is declared by the feature that needs it

# The import name -> the requirement (setup.cfg's spelling) that provides it. An import missing
# here fails the test: add it, and declare the requirement in the feature's extra.
PROVIDED_BY = {
    "numpy": "numpy", "pandas": "pandas", "PIL": "pillow", "click": "click", "tqdm": "tqdm",
    "google_crc32c": "google-crc32c", "matplotlib": "matplotlib", "tomli": "tomli",
    "tensorflow": "tensorflow", "keras": "tensorflow",            # Keras 3 comes with TensorFlow 2.21
    "tensorflow_datasets": "tensorflow-datasets", "sklearn": "scikit-learn", "scipy": "scipy",
    "pydicom": "pydicom", "dicomanonymizer": "dicom-anonymizer", "tf_keras_vis": "tf-keras-vis", "lime": "lime",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert", "tf2onnx": "tf2onnx",
    "keras_tuner": "keras-tuner", "flwr": "flwr", "ray": "flwr",   # ray is flwr[simulation]'s engine
    "psutil": "psutil", "torch": "torch", "torchvision": "torchvision", "apache_beam": "apache-beam",
}
# The feature (extra) each part of the package belongs to; the longest matching prefix wins.
# "core" is install_requires alone.
FEATURE = {
    "cxr_tf": "core", "cxr_tf.dicom": "dicom", "cxr_tf.synth.phi": "dicom", "cxr_tf.datasets.mimic.phantom": "dicom",
    # DICOM releases: their phantom writers, and the sources that read DICOM headers (only when images are present)
    "cxr_tf.datasets.openi.phantom": "dicom", "cxr_tf.datasets.rsna_pneumonia": "dicom",
    "cxr_tf.datasets.siim_acr": "dicom", "cxr_tf.datasets.vindr_cxr.phantom": "dicom",
    "cxr_tf.pipeline": "tf", "cxr_tf.models": "tf", "cxr_tf.evaluation": "tf", "cxr_tf.training": "tf",
    "cxr_tf.training.config": "core", "cxr_tf.explain": "explain", "cxr_tf.search": "tune",
    "cxr_tf.federated": "federated", "cxr_tf.interop.export": "export", "cxr_tf.interop.weights": "import",
    "cxr_tf.interop.tfds": "tf", "cxr_tf.studies": "all", "cxr_tf.studies.stats": "core",
    # --runner beam (apache_beam imported inside functions; cxr_tf imports without it)
    "cxr_tf.core.beam": "beam", "cxr_tf.records.beam": "beam", "cxr_tf.dicom.beam": "beam",
}


def _requirements() -> dict[str, set[str]]:
    """Extra -> the requirement names it brings, ``cxr-tf[...]`` followed; "core" is install_requires."""
    import re

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def names(text):
        return [line.split(";")[0].strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]

    raw = {"core": names(cfg["options"]["install_requires"])}
    raw.update({k: names(v) for k, v in cfg["options.extras_require"].items()})

    def closure(extra, seen=()):
        out = set()
        for req in raw[extra]:
            m = re.match(r"cxr-tf\[(.*)\]", req)
            if m:
                for sub in m.group(1).split(","):
                    if sub not in seen:
                        out |= closure(sub.strip(), (*seen, extra))
            else:
                out.add(re.split(r"[<>=!\[ ]", req, maxsplit=1)[0].lower())
        return out | ({n.lower() for n in raw["core"]} if extra != "core" else set())

    return {extra: {re.split(r"[<>=!\[ ]", r, maxsplit=1)[0].lower() for r in raw["core"]} | closure(extra)
            for extra in raw}


def _third_party(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        found |= {n.split(".")[0] for n in names}
    return {n for n in found if n not in sys.stdlib_module_names and n != "cxr_tf"}


def test_every_import_is_declared_by_its_feature():
    reqs = _requirements()
    assert {"tf", "dicom", "explain", "export", "import", "tune", "federated", "beam", "dev", "all"} <= set(reqs)
    assert {"apache-beam", "tensorflow", "pydicom"} <= reqs["beam"] and "apache-beam" in reqs["all"]
    files = [(".".join(p.relative_to(REPO).with_suffix("").parts), p) for p in (REPO / "cxr_tf").rglob("*.py")]
    files += [(".".join(("cxr_tf", *p.relative_to(REPO).with_suffix("").parts)), p)
              for p in (REPO / "datasets").rglob("*.py")]
    problems = []
    for module, path in files:
        module = module.removesuffix(".__init__")
        feature = FEATURE[max((k for k in FEATURE if module == k or module.startswith(k + ".")), key=len)]
        for name in sorted(_third_party(path)):
            if name not in PROVIDED_BY:
                problems.append(f"{module} imports {name}: say which requirement provides it (PROVIDED_BY)")
            elif PROVIDED_BY[name].lower() not in reqs[feature]:
                problems.append(f"{module} imports {name} ({PROVIDED_BY[name]}), which the {feature!r} extra lacks")
    assert not problems, "\n".join(problems)
    assert {"pytest", "ruff"} <= reqs["dev"] and "pytest" not in reqs["all"]
