"""``cxr-tf import-weights``: each PyTorch checkpoint layout people have (arnoweng/CheXNet,
jrzech/reproduce-chexnet, torchxrayvision), synthesized from randomly initialized torchvision
DenseNet121 models (in a child process, tests/interop/torch_reference.py), converts to a Keras model whose
outputs equal PyTorch's within 1e-4; skipped without torch and torchvision."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
    pytest.skip("torch and torchvision are not installed (the 'import' extra)", allow_module_level=True)

from cxr_tf.core import cards  # noqa: E402
from cxr_tf.cli import main  # noqa: E402
from cxr_tf.core.errors import CxrDataError  # noqa: E402
from cxr_tf.interop.weights import XRV_PATHOLOGIES, canonical, import_weights, read_checkpoint  # noqa: E402

SIZE = 64
NIH = cards.dataset_card("chestxray14")["findings"]


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("torch_reference")
    subprocess.run([sys.executable, str(Path(__file__).with_name("torch_reference.py")), str(out), str(SIZE)],
                   check=True)
    return out


def _compare(tmp_path, ref, source, name, trust=False):
    from cxr_tf.models import findings_of, load_model
    res = import_weights(source, ref / name, tmp_path / f"{source}.keras", trust=trust, image_size=SIZE)
    model = load_model(res["out"])
    data = np.load(ref / "reference.npz")
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data[source], atol=1e-4)
    return model, findings_of(model)


def test_arnoweng_chexnet_layout(tmp_path, ref):
    import zipfile
    with zipfile.ZipFile(ref / "model.pth.tar") as zf:        # torch's zip format holds the pickled key names
        pickled = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert b"module.densenet121.features" in pickled and b".norm.1." in pickled
    assert _compare(tmp_path, ref, "arnoweng", "model.pth.tar")[1] == NIH


def test_jrzech_pickled_model_needs_trust(tmp_path, ref):
    with pytest.raises(CxrDataError, match="trust-checkpoint"):
        read_checkpoint(ref / "checkpoint")
    assert _compare(tmp_path, ref, "jrzech", "checkpoint", trust=True)[1] == NIH


def test_torchxrayvision_layout(tmp_path, ref):
    from cxr_tf.models import thresholds_of
    model, names = _compare(tmp_path, ref, "torchxrayvision", "densenet121-res224-all.pt")
    assert names == XRV_PATHOLOGIES
    np.testing.assert_allclose(list(thresholds_of(model).values()), np.load(ref / "reference.npz")["op_threshs"],
                               atol=1e-6)


def test_canonical_names_and_clear_errors(tmp_path):
    keys = {"module.densenet121.features.denseblock1.denselayer1.norm.1.weight": np.zeros(1),
            "module.densenet121.classifier.0.bias": np.zeros(1), "features.norm0.num_batches_tracked": np.zeros(1)}
    assert set(canonical(keys)) == {"features.denseblock1.denselayer1.norm1.weight", "classifier.bias"}
    np.save(tmp_path / "not_a_checkpoint.pt", np.zeros(3))
    with pytest.raises(CxrDataError, match="not_a_checkpoint"):
        read_checkpoint(tmp_path / "not_a_checkpoint.pt", trust=True)
    from cxr_tf.interop.weights import convert
    partial = {"features.conv0.weight": np.zeros((64, 3, 7, 7)), "classifier.weight": np.zeros((14, 1024)),
               "classifier.bias": np.zeros(14)}
    with pytest.raises(CxrDataError, match="no weights for"):
        convert(partial, "arnoweng", image_size=SIZE)
    with pytest.raises(CxrDataError, match="18 outputs"):
        convert(partial, "torchxrayvision", image_size=SIZE)


def test_imported_chexnet_evaluates_on_nih_records(tmp_path, ref, records_dir):
    res = CliRunner().invoke(main, ["import-weights", "arnoweng", str(ref / "model.pth.tar"), "--out",
                                    str(tmp_path / "run"), "--records", str(records_dir), "--image-size", "48"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "run"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["findings"] == NIH and metrics["split"] == "test" and metrics["images"] > 0
