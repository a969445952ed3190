"""``cxr-tf export``: a cxr_tf model as a TensorFlow SavedModel, a LiteRT ``.tflite`` file or an
ONNX file, checked against Keras before it is kept.

Every artifact takes what the ``.keras`` model takes, raw grayscale pixels on 0..255 as float32
[B, S, S, 1] (the normalization is inside), and returns one probability per finding. The finding
names travel with it: the SavedModel has a ``findings`` signature (and the ``serve`` one), the ONNX
file ``findings``, ``thresholds`` and ``preprocessing`` metadata properties, the ``.tflite`` file a
``cxr_tf`` metadata entry with the same (:func:`tflite_metadata`), and every format a
``<path>.json`` sidecar. The export is written beside its destination, run on a
few images (random pixels, plus any given), and renamed into place only if it matches Keras
within ``atol`` (1e-4): a conversion that changes the numbers (one route once gave all-NaN
outputs) fails loudly and leaves nothing behind.

Needs the ``export`` extra for LiteRT and ONNX (``pip install "cxr-tf[export]"``: tf2onnx >= 1.17,
onnx, onnxruntime, ai-edge-litert).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError, CxrError

log = logging.getLogger(__name__)
FORMATS = {"savedmodel": "tf_saved_model", "litert": "litert", "onnx": "onnx"}
EXTRA = {"litert": "ai-edge-litert", "onnx": "tf2onnx>=1.17, onnx and onnxruntime"}


class ExportMismatchError(CxrError):
    """An exported artifact whose predictions differ from the Keras model's."""


def _resolve(model_or_run):
    """A loaded model from a ``.keras`` file or a run directory."""
    from cxr_tf.models import load_model
    from cxr_tf.models.rundir import RunDir

    path = Path(model_or_run)
    return load_model(RunDir(path).model_path if path.is_dir() else path)


def _runner(fmt: str, path: Path):
    """A function batch -> probabilities for an exported artifact."""
    if fmt == "savedmodel":
        import tensorflow as tf
        serve = tf.saved_model.load(str(path)).signatures["serve"]
        return lambda x: next(iter(serve(tf.constant(x)).values())).numpy()
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(str(path))

        def run(x):
            inp = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        return run
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _write(model, fmt: str, tmp: Path, meta: dict) -> None:
    """Write the artifact (with the finding names inside) to ``tmp``."""
    import tensorflow as tf

    size = meta["preprocessing"]["input_size"]
    if fmt == "savedmodel":
        from keras.export import ExportArchive
        archive = ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32, name="pixels")])
        findings = tf.constant(meta["findings"])
        archive.add_endpoint("findings", lambda: findings, input_signature=[])
        archive.write_out(str(tmp), verbose=False)
        return
    model(np.zeros((1, size, size, 1), np.float32), training=False)    # a loaded model must be called first
    try:
        model.export(str(tmp), format=FORMATS[fmt], verbose=False)
    except ImportError as exc:
        raise CxrConfigError(f"exporting to {fmt} needs {EXTRA[fmt]}: pip install \"cxr-tf[export]\" ({exc})",
                             key="format") from None
    if fmt == "litert":
        _tflite_add_metadata(tmp, {k: meta[k] for k in ("findings", "thresholds", "preprocessing")})
    if fmt == "onnx":
        import onnx
        proto = onnx.load(str(tmp))
        for key in ("findings", "thresholds", "preprocessing"):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(meta[key])
        onnx.save(proto, str(tmp))


TFLITE_METADATA = "cxr_tf"


def _tflite_add_metadata(path: Path, meta: dict) -> None:
    """Add a ``cxr_tf`` metadata entry (JSON) to a .tflite flatbuffer (TensorFlow's schema code)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = TFLITE_METADATA, len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    flatbuffer_utils.write_model(model, str(path))


def tflite_metadata(path) -> dict:
    """The ``cxr_tf`` metadata (findings, thresholds, preprocessing) of an exported .tflite file."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == TFLITE_METADATA:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    raise CxrError(f"{path}: no {TFLITE_METADATA} metadata (not exported by cxr-tf)")


def check_images(model, n: int = 4, seed: int = 0, files=()) -> np.ndarray:
    """Raw-pixel inputs to compare an export with Keras on: ``n`` random images (uniform and
    smooth) plus ``files`` read as the model reads them."""
    from cxr_tf.models import image_input, input_size_of

    size = input_size_of(model)
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n // 2 or 1, size, size, 1)).astype(np.float32)
    y, x = np.mgrid[:size, :size] / size
    smooth = np.stack([255 * (0.5 + 0.5 * np.sin(6 * x * (k + 1) + 4 * y)) for k in range(max(n - len(noise), 1))])
    batch = [noise, smooth[..., None].astype(np.float32)]
    batch += [image_input(f, model).pixels[None].astype(np.float32) for f in files]
    return np.concatenate(batch)


def export(model_or_run, fmt: str, out, *, atol: float = 1e-4, images=(), repeats: int = 5) -> dict:
    """Export and check (see the module doc); returns size, conversion seconds, the largest
    difference from Keras and inference seconds per image for the export and for Keras."""
    from cxr_tf.models import findings_of, preprocessing_of, thresholds_of

    if fmt not in FORMATS:
        raise CxrConfigError(f"unknown format {fmt!r}", key="format", choices=FORMATS)
    model = _resolve(model_or_run) if not hasattr(model_or_run, "predict") else model_or_run
    meta = {"findings": findings_of(model), "thresholds": thresholds_of(model),
            "preprocessing": preprocessing_of(model), "input": "float32 [B, S, S, 1] raw pixels 0..255",
            "format": fmt}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.stem}.partial-{os.getpid()}{out.suffix}")    # LiteRT insists on .tflite
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    t = time.perf_counter()
    try:
        _write(model, fmt, tmp, meta)
        seconds = time.perf_counter() - t
        x = check_images(model, files=images)
        want = model.predict(x, verbose=0)
        run = _runner(fmt, tmp)
        got = run(x)
        diff = float(np.nanmax(np.abs(got - want))) if got.shape == want.shape and np.isfinite(got).all() else np.inf
        if not diff <= atol:
            raise ExportMismatchError(f"{out}: the {fmt} export disagrees with the Keras model (max difference "
                                      f"{diff:.3g} > {atol:g} on {len(x)} images); nothing was written")
        timing = _timing(run, model, x, repeats)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if out.is_dir():
        shutil.rmtree(out)
    os.replace(tmp, out)
    atomic.write_json(out.with_name(out.name + ".json"), meta)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else out.stat().st_size
    res = {"format": fmt, "path": str(out), "bytes": int(size), "convert_s": seconds, "max_abs_diff": diff,
           "images_checked": int(len(x)), **timing}
    log.info("exported %s: %s", out, res)
    return res


def _timing(run, model, x: np.ndarray, repeats: int) -> dict:
    """Median seconds per image of the export and of Keras on the check batch."""
    def per_image(fn):
        fn(x)                                   # warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
        return float(np.median(times)) / len(x)
    return {"export_s_per_image": per_image(run),
            "keras_s_per_image": per_image(lambda b: model.predict(b, verbose=0))}
