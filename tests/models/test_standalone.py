"""A trained model stands alone: the export guide's plain-Keras example (docs/guides/export-import.md)
runs, verbatim, in a fresh process on a model trained by the tiny preset, and gives the same
probabilities as cxr_tf's own predict; `keras.saving.load_model` reads the file once the layers are registered."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "export-import.md"


def _example() -> str:
    text = GUIDE.read_text()
    m = re.search(r"<!-- standalone-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"{GUIDE} has no block marked <!-- standalone-example -->"
    return m.group(1)


def test_guide_example_is_short():
    lines = [line for line in _example().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 7, lines


def test_guide_example_runs_on_a_tiny_preset_model(tiny_run, phantom_dir, tmp_path):
    (tmp_path / "runs/demo/run").mkdir(parents=True)
    shutil.copy(tiny_run / "model.keras", tmp_path / "runs/demo/run/model.keras")
    scan = sorted(phantom_dir.glob("images_*/images/*.png"))[0]
    shutil.copy(scan, tmp_path / "scan.png")
    code = _example() + "\nimport json; print('RESULT', json.dumps({k: float(v) for k, v in probs.items()}))\n"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.split("RESULT", 1)[1])

    from cxr_tf.models import findings_of, input_size_of, load_model
    model = load_model(tiny_run / "model.keras")
    assert list(got) == findings_of(model)
    side = input_size_of(model)
    x = np.asarray(Image.open(scan).convert("L").resize((side, side)))[None, ..., None]
    want = model.predict(x, verbose=0)[0]
    np.testing.assert_allclose([got[f] for f in findings_of(model)], want, rtol=1e-5, atol=1e-6)


def test_plain_keras_load_and_cxr_tf_preprocessing_agree(tiny_run, phantom_dir):
    """keras.saving.load_model gives the same model; image_input reproduces the records' own
    preprocessing, so its prediction equals the model's on the evaluation pipeline's pixels."""
    import keras

    import cxr_tf.models  # noqa: F401  (registers the layers)
    from cxr_tf.models import image_input, load_model
    from cxr_tf.pipeline import make_dataset
    from cxr_tf.models.rundir import RunDir
    model = load_model(tiny_run / "model.keras")
    plain = keras.saving.load_model(tiny_run / "model.keras")
    run = RunDir(tiny_run)
    frame = run.records().split_frame("test")
    pixels, _ = next(iter(make_dataset(run.records().path, "test", batch_size=4, image_size=48)))
    for k in range(4):
        loaded = image_input(phantom_dir / frame["path"].iloc[k], model)
        np.testing.assert_array_equal(loaded.pixels, pixels.numpy()[k])
    np.testing.assert_allclose(plain.predict(pixels, verbose=0), model.predict(pixels, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_model_takes_uint8_or_float_pixels(tiny_run, dtype):
    from cxr_tf.models import load_model
    model = load_model(tiny_run / "model.keras")
    x = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 1))
    np.testing.assert_allclose(model.predict(x.astype(dtype), verbose=0),
                               model.predict(x.astype(np.float64), verbose=0), rtol=1e-6)
