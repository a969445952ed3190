"""``cxr-tf import-weights``: each PyTorch checkpoint layout people have (arnoweng/CheXNet,
jrzech/reproduce-chexnet, torchxrayvision), synthesized from randomly initialized torchvision
DenseNet121 models, converts to a Keras model whose outputs equal PyTorch's within 1e-4."""

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from cxr_tf import cards  # noqa: E402
from cxr_tf.cli import main  # noqa: E402
from cxr_tf.errors import CxrDataError  # noqa: E402
from cxr_tf.importer import XRV_PATHOLOGIES, canonical, import_weights, read_checkpoint  # noqa: E402

SIZE = 64
NIH = cards.dataset_card("chestxray14")["findings"]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _densenet(outputs: int, channels: int = 3, sigmoid_head: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    net = torchvision.models.densenet121(weights=None)
    if channels == 1:
        net.features.conv0 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    head = torch.nn.Linear(1024, outputs)
    net.classifier = torch.nn.Sequential(head, torch.nn.Sigmoid()) if sigmoid_head else head
    with torch.no_grad():                   # non-trivial batch-norm statistics, as a trained model has
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _pixels(n=3, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 1)).astype(np.float32)


def _torch_out(net, x, normalization):
    if normalization == "imagenet":
        rgb = np.repeat(x / 255.0, 3, axis=-1)
        t = ((rgb - MEAN) / STD).transpose(0, 3, 1, 2)
    else:                                                       # torchxrayvision: [-1024, 1024], one channel
        t = ((2 * (x / 255.0) - 1) * 1024).transpose(0, 3, 1, 2)
    with torch.no_grad():
        out = net(torch.tensor(t, dtype=torch.float32))
        return (out if normalization == "imagenet" else torch.sigmoid(out)).numpy()


def _old_names(state):
    """arnoweng's DataParallel checkpoint: ``module.densenet121.`` and the pre-0.4 ``norm.1`` names."""
    import re
    return {"module.densenet121." + re.sub(r"\.(norm|relu|conv)(\d)\.", r".\1.\2.", k): v for k, v in state.items()}


def _convert_and_compare(tmp_path, source, path, net, normalization, trust=False):
    from cxr_tf.models import findings_of, load_model
    res = import_weights(source, path, tmp_path / f"{source}.keras", trust=trust, image_size=SIZE)
    model = load_model(res["out"])
    x = _pixels()
    np.testing.assert_allclose(model.predict(x, verbose=0), _torch_out(net, x, normalization), atol=1e-4)
    return model, findings_of(model)


def test_arnoweng_chexnet_layout(tmp_path):
    net = _densenet(14)
    state = _old_names(net.state_dict())
    assert any(".norm.1." in k for k in state) and all(k.startswith("module.densenet121.") for k in state)
    path = tmp_path / "model.pth.tar"
    torch.save({"epoch": 1, "state_dict": state, "best_loss": 0.1}, path)
    _, names = _convert_and_compare(tmp_path, "arnoweng", path, net, "imagenet")
    assert names == NIH


def test_jrzech_pickled_model_needs_trust(tmp_path):
    net = _densenet(14, seed=2)
    path = tmp_path / "checkpoint"
    torch.save({"model": net, "best_loss": 0.2, "epoch": 3, "LR": 1e-4}, path)
    with pytest.raises(CxrDataError, match="trust-checkpoint"):
        read_checkpoint(path)
    _, names = _convert_and_compare(tmp_path, "jrzech", path, net, "imagenet", trust=True)
    assert names == NIH


def test_torchxrayvision_layout(tmp_path):
    net = _densenet(18, channels=1, sigmoid_head=False, seed=3)
    state = dict(net.state_dict())
    op = torch.linspace(0.1, 0.6, 18)
    path = tmp_path / "densenet121-res224-all.pt"
    torch.save({**state, "op_threshs": op}, path)
    from cxr_tf.models import thresholds_of
    model, names = _convert_and_compare(tmp_path, "torchxrayvision", path, net, "xrv")
    assert names == XRV_PATHOLOGIES
    np.testing.assert_allclose(list(thresholds_of(model).values()), op.numpy(), atol=1e-6)


def test_canonical_names_and_clear_errors(tmp_path):
    keys = {"module.densenet121.features.denseblock1.denselayer1.norm.1.weight": np.zeros(1),
            "module.densenet121.classifier.0.bias": np.zeros(1), "features.norm0.num_batches_tracked": np.zeros(1)}
    assert set(canonical(keys)) == {"features.denseblock1.denselayer1.norm1.weight", "classifier.bias"}
    torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7), "classifier.weight": torch.zeros(14, 1024),
                "classifier.bias": torch.zeros(14)}, tmp_path / "partial.pt")
    res = CliRunner().invoke(main, ["import-weights", "arnoweng", str(tmp_path / "partial.pt"),
                                    "--out", str(tmp_path / "x.keras")])
    assert res.exit_code == 2 and "no weights for" in res.output and not (tmp_path / "x.keras").exists()
    res = CliRunner().invoke(main, ["import-weights", "torchxrayvision", str(tmp_path / "partial.pt"),
                                    "--out", str(tmp_path / "x.keras")])
    assert res.exit_code == 2 and "18 outputs" in res.output


def test_imported_chexnet_evaluates_on_nih_records(tmp_path, records_dir):
    import json
    net = _densenet(14, seed=4)
    torch.save({"state_dict": _old_names(net.state_dict())}, tmp_path / "model.pth.tar")
    res = CliRunner().invoke(main, ["import-weights", "arnoweng", str(tmp_path / "model.pth.tar"), "--out",
                                    str(tmp_path / "run"), "--records", str(records_dir), "--image-size", "48"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "run"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["findings"] == NIH and metrics["split"] == "test" and metrics["images"] > 0
