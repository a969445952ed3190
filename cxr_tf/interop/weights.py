"""``cxr-tf import-weights``: the field's PyTorch DenseNet121 checkpoints as cxr_tf Keras models.

Sources (:data:`SOURCES`): arnoweng/CheXNet's ``model.pth.tar`` (a DataParallel ``module.`` prefix,
the old ``norm.1``/``conv.1`` key names, a ``classifier.0`` Linear+Sigmoid head, the 14 ChestX-ray14
findings in CheXNet's order); jrzech/reproduce-chexnet's checkpoint (a whole pickled model under
``"model"``, the same 14 findings); and torchxrayvision's ``densenet121-res224-*`` weights (one input
channel, the [-1024, 1024] normalization, 18 outputs with its pathology names). The weights go
into our flat DenseNet121 graph (``chexnet`` preset: ImageNet normalization, GAP, sigmoid head),
so evaluate, predict, explain and export take the result like any other model.

A checkpoint is a pickle, and unpickling runs code: it is read with ``torch.load(...,
weights_only=True)``; one that cannot be read that way (jrzech's pickles the model class) is
refused with a clear message unless the caller passes ``trust=True`` (``--trust-checkpoint``).
Needs the ``import`` extra (torch; torchvision only for the tests' reference models).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError

log = logging.getLogger(__name__)
XRV_PATHOLOGIES = ["Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema",
                   "Fibrosis", "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass",
                   "Hernia", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum"]
SOURCES = {
    "arnoweng": {"findings": "chestxray14", "normalization": "imagenet", "channels": 3},
    "jrzech": {"findings": "chestxray14", "normalization": "imagenet", "channels": 3},
    "torchxrayvision": {"findings": XRV_PATHOLOGIES, "normalization": "xrv", "channels": 1},
}
BLOCKS = (6, 12, 24, 16)


_LOADER = """
import sys, numpy as np, torch
path, trust, out = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
except Exception as exc:
    if not trust:
        print(f"{type(exc).__name__}: {str(exc)[:160]}", file=sys.stderr)
        sys.exit(3)
    obj = torch.load(path, map_location="cpu", weights_only=False)
if isinstance(obj, dict) and "state_dict" in obj:
    obj = obj["state_dict"]
elif isinstance(obj, dict) and "model" in obj and hasattr(obj["model"], "state_dict"):
    obj = obj["model"].state_dict()
elif hasattr(obj, "state_dict"):
    obj = obj.state_dict()
if not isinstance(obj, dict):
    print(f"holds a {type(obj).__name__}, not a state dict", file=sys.stderr)
    sys.exit(4)
np.savez(out, **{k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")})
"""


def read_checkpoint(path, trust: bool = False) -> dict[str, np.ndarray]:
    """A checkpoint's weights as {key: array}, from a state dict, ``{"state_dict": ...}``, or (only
    with ``trust``) a pickled model. The unpickling runs in a child process: torchvision, which a
    pickled model imports, aborts the process when TensorFlow is already loaded in it."""
    import importlib.util
    import subprocess
    import sys
    import tempfile

    if importlib.util.find_spec("torch") is None:
        raise CxrConfigError("importing PyTorch checkpoints needs torch: pip install \"cxr-tf[import]\"",
                             key="source")
    path = Path(path)
    if not path.is_file():
        raise CxrDataError(path, "checkpoint not found")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "weights.npz"
        done = subprocess.run([sys.executable, "-c", _LOADER, str(path), "1" if trust else "0", str(out)],
                              capture_output=True, text=True)
        if done.returncode == 3:
            raise CxrDataError(path, "cannot be read as weights only (it pickles code, e.g. a whole model); "
                                     "unpickling runs that code: pass --trust-checkpoint only for a file you "
                                     f"trust ({done.stderr.strip()[-200:]})")
        if done.returncode:
            raise CxrDataError(path, f"cannot read the checkpoint: {done.stderr.strip()[-300:]}")
        if trust:
            log.warning("%s: read as a full pickle (trusted by the caller)", path)
        with np.load(out) as data:
            return {k: data[k] for k in data.files}


def canonical(state: dict) -> dict:
    """Torchvision's key names: no ``module.``/``densenet121.``/``model.`` prefixes, ``norm.1`` ->
    ``norm1`` (the pre-0.4 names), ``classifier.0`` -> ``classifier``; batch counters dropped."""
    out = {}
    for key, value in state.items():
        k = re.sub(r"^(?:module\.)?(?:densenet121\.|model\.)?", "", key)
        k = re.sub(r"\.(norm|relu|conv)\.(\d)\.", r".\1\2.", k)
        k = k.replace("classifier.0.", "classifier.")
        if not k.endswith("num_batches_tracked"):
            out[k] = value
    return out


def _layer_of(key: str) -> tuple[str, str] | None:
    """torchvision DenseNet key -> (Keras layer name, parameter)."""
    m = re.match(r"features\.(conv0|norm0|norm5)\.(\w+)$", key)
    if m:
        return {"conv0": "conv1_conv", "norm0": "conv1_bn", "norm5": "bn"}[m[1]], m[2]
    m = re.match(r"features\.denseblock(\d)\.denselayer(\d+)\.(norm1|conv1|norm2|conv2)\.(\w+)$", key)
    if m:
        part = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}[m[3]]
        return f"conv{int(m[1]) + 1}_block{m[2]}_{part}", m[4]
    m = re.match(r"features\.transition(\d)\.(norm|conv)\.(\w+)$", key)
    if m:
        return f"pool{int(m[1]) + 1}_{'bn' if m[2] == 'norm' else 'conv'}", m[3]
    m = re.match(r"classifier\.(weight|bias)$", key)
    return ("predictions", m[1]) if m else None


def convert(state: dict, source: str, image_size: int = 224):
    """A canonical DenseNet121 state dict -> a cxr_tf Keras model of ``source``'s findings."""
    from cxr_tf.models.build import build_model

    if source not in SOURCES:
        raise CxrConfigError(f"unknown source {source!r}", key="source", choices=SOURCES)
    spec = SOURCES[source]
    findings = spec["findings"]
    findings = findings if isinstance(findings, list) else cards.dataset_card(findings)["findings"]
    if "classifier.weight" not in state or state["classifier.weight"].shape[0] != len(findings):
        got = state.get("classifier.weight", np.zeros((0,))).shape
        raise CxrDataError(None, f"{source}: expected a classifier with {len(findings)} outputs, got {got}")
    model = build_model("chexnet", backbone="densenet121", weights=None, findings=list(findings),
                        image_size=image_size, normalization=spec["normalization"])
    grouped: dict[str, dict[str, np.ndarray]] = {}
    unused = []
    for key, value in state.items():
        where = _layer_of(key)
        if where is None:
            unused.append(key)
            continue
        grouped.setdefault(where[0], {})[where[1]] = value
    if unused:
        log.info("%s: %d keys not used (e.g. %s)", source, len(unused), unused[:3])
    expected = {layer.name for layer in model.layers if layer.weights}
    missing = sorted(expected - set(grouped))
    if missing:
        raise CxrDataError(None, f"{source}: the checkpoint has no weights for {len(missing)} layers, "
                                 f"e.g. {missing[:3]}")
    for name, params in grouped.items():
        layer = model.get_layer(name)
        if "running_mean" in params:                       # batch norm
            layer.set_weights([params["weight"], params["bias"], params["running_mean"], params["running_var"]])
        elif name == "predictions":
            layer.set_weights([params["weight"].T, params["bias"]])
        else:                                              # convolution, OIHW -> HWIO
            kernel = params["weight"].transpose(2, 3, 1, 0)
            if kernel.shape[2] == 1 and spec["channels"] == 1:
                kernel = np.repeat(kernel / 3.0, 3, axis=2)   # gray replicated to RGB: same response
            layer.set_weights([kernel])
    _operating_points(model, state, findings)
    return model


def _operating_points(model, state: dict, findings) -> None:
    """torchxrayvision's ``op_threshs`` (the operating points its ``op_norm`` moves to 0.5) become
    the model's thresholds; the model itself outputs the plain sigmoid probabilities."""
    from cxr_tf.models import set_thresholds

    op = state.get("op_threshs")
    if op is None:
        return
    op = np.asarray(op, np.float64).ravel()
    if len(op) == len(findings) and np.isfinite(op).all():
        set_thresholds(model, dict(zip(findings, op.tolist())), "torchxrayvision op_threshs")
    else:
        log.warning("op_threshs has %d non-finite values: no thresholds stored", int((~np.isfinite(op)).sum()))


def import_weights(source: str, checkpoint, out, *, trust: bool = False, image_size: int = 224,
                   records=None) -> dict:
    """Read, convert and save (atomically) a checkpoint as ``out`` (a ``.keras`` file); with
    ``records``, ``out`` is a run directory on those records instead, so ``cxr-tf evaluate --run
    OUT`` scores the imported model (e.g. CheXNet on the official NIH test split)."""
    from cxr_tf.core import atomic
    from cxr_tf.models import findings_of, save_model
    from cxr_tf.records.reader import RecordsDir
    from cxr_tf.models.rundir import CONFIG, MODEL, SPLIT_SUMMARY

    state = canonical(read_checkpoint(checkpoint, trust))
    model = convert(state, source, image_size)
    path = Path(out)
    if records is not None:
        rec = RecordsDir(records)
        if rec.findings != findings_of(model):
            log.warning("%s: the records' findings differ from the model's; evaluate will use the crosswalk", records)
        path.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path / SPLIT_SUMMARY, {"splits": rec.summary["splits"], "dataset": rec.dataset})
        atomic.write_json(path / CONFIG, {"records": str(Path(records).resolve()), "batch_size": 16, "blank": "zeros",
                                          "image_size": image_size, "dataset": rec.dataset,
                                          "imported_from": {"source": source, "checkpoint": str(checkpoint)}})
        path = path / MODEL
    save_model(model, path)
    return {"source": source, "out": str(path), "findings": findings_of(model), "tensors": len(state)}
