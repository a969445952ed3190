"""``cxr-tf export``: SavedModel, LiteRT and ONNX round-trip a model within 1e-4 of Keras on
raw-pixel input, carry the finding names, and an export that disagrees fails and leaves nothing."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.interop.export import ExportMismatchError, check_images, export

NEEDS = {"savedmodel": None, "litert": "ai_edge_litert", "onnx": "onnxruntime"}
SUFFIX = {"savedmodel": "", "litert": ".tflite", "onnx": ".onnx"}


@pytest.fixture(scope="module")
def model(tiny_run):
    from cxr_tf.models import load_model
    return load_model(tiny_run / "model.keras")


@pytest.mark.parametrize("fmt", list(NEEDS))
def test_round_trip_and_names(fmt, model, tiny_run, tmp_path):
    if NEEDS[fmt]:
        pytest.importorskip(NEEDS[fmt])
        pytest.importorskip("tf2onnx" if fmt == "onnx" else NEEDS[fmt])
    from cxr_tf.interop.export import _runner
    from cxr_tf.models import findings_of

    out = tmp_path / f"model{SUFFIX[fmt]}"
    from PIL import Image
    image = tmp_path / "film.png"                 # a non-square 16-bit file, read as the model reads it
    y, x = np.mgrid[:90, :120]
    Image.fromarray((40000 + 20000 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint16)).save(image)
    res = export(tiny_run, fmt, out, images=[image])
    assert res["max_abs_diff"] <= 1e-4 and res["images_checked"] == 5 and res["bytes"] > 1000
    x = check_images(model, n=6, seed=3)
    np.testing.assert_allclose(_runner(fmt, out)(x), model.predict(x, verbose=0), atol=1e-4)
    names = findings_of(model)
    assert json.loads((tmp_path / f"{out.name}.json").read_text())["findings"] == names
    if fmt == "savedmodel":
        import tensorflow as tf
        loaded = tf.saved_model.load(str(out))
        assert [s.decode() for s in loaded.signatures["findings"]()["output_0"].numpy()] == names
    if fmt == "litert":
        from cxr_tf.interop.export import tflite_metadata
        assert tflite_metadata(out)["findings"] == names
    if fmt == "onnx":
        import onnx
        props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(props["findings"]) == names and "input_size" in json.loads(props["preprocessing"])
    assert not list(tmp_path.glob("*.partial-*"))


def test_a_disagreeing_export_fails_loudly(tiny_run, tmp_path, monkeypatch):
    import cxr_tf.interop.export as ex
    real = ex._runner

    def broken(fmt, path):
        run = real(fmt, path)
        return lambda x: run(x) + 1e-3           # a conversion that shifts every probability
    monkeypatch.setattr(ex, "_runner", broken)
    with pytest.raises(ExportMismatchError, match="disagrees with the Keras model"):
        export(tiny_run, "savedmodel", tmp_path / "sm")
    assert not (tmp_path / "sm").exists() and not list(tmp_path.glob("*partial*"))
    monkeypatch.setattr(ex, "_runner", lambda fmt, path: (lambda x: np.full((len(x), 14), np.nan, np.float32)))
    with pytest.raises(ExportMismatchError, match="inf"):
        export(tiny_run, "savedmodel", tmp_path / "nan")


def test_cli(tiny_run, tmp_path):
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--format", "savedmodel", "--out", str(tmp_path / "sm")])
    assert res.exit_code == 0, res.output
    assert "max difference from Keras" in res.output and (tmp_path / "sm" / "saved_model.pb").is_file()
