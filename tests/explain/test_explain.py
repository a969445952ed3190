"""Heatmaps: every method returns finite [B, H, W] maps; CAM uses the preset's layer; the mapping to
original-image pixels through resize, pad and crop puts a known lesion where it is."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from cxr_tf.explain import METHODS, box_to_input, heatmaps, input_to_original, to_original
from cxr_tf.imaging import fit
from cxr_tf.models import build_model, cam_layer
from cxr_tf.pipeline import preprocess_batch


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    return build_model("tiny", weights=None, image_size=32)


@pytest.fixture(scope="module")
def batch():
    """Two model inputs: grayscale pixels on 0..255."""
    return np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 1)).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_batched_finite(tiny, batch, method):
    opts = {"samples": 20} if method == "lime" else {"samples": 3} if method == "smoothgrad" else {}
    opts.update({"steps": 4} if method == "ig" else {})
    maps = heatmaps(tiny, batch, [1, 5], method, **opts)
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


def test_cam_uses_the_preset_layer_by_hand(tiny, batch):
    assert cam_layer(tiny) == "tiny_relu"
    feats = keras.Model(tiny.inputs, tiny.get_layer("tiny_relu").output).predict(batch, verbose=0)
    kernel = tiny.get_layer("predictions").get_weights()[0]
    raw = np.einsum("bhwc,ck->bkhw", feats, kernel)
    t = int(np.argmax(np.minimum(raw[0].max(axis=(1, 2)), raw[1].max(axis=(1, 2)))))  # positive in both
    manual = np.maximum(raw[:, t], 0)
    manual /= manual.reshape(2, -1).max(axis=1)[:, None, None]
    small = tf.image.resize(heatmaps(tiny, batch, [t, t], "cam")[..., None], manual.shape[1:], "area").numpy()[..., 0]
    assert np.corrcoef(small.ravel(), manual.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_cached_helpers_follow_weight_changes(batch, method):
    """Helpers are cached per model (no retracing batch after batch), but a model that keeps
    training (TensorBoard's per-epoch Grad-CAM) must get maps from its current weights."""
    from cxr_tf.explain import methods
    keras.utils.set_random_seed(1)
    model = build_model("tiny", weights=None, image_size=32)
    before = heatmaps(model, batch, [0, 0], method)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    conv.set_weights([w * -1.0 for w in conv.get_weights()])
    after = heatmaps(model, batch, [0, 0], method)
    methods._CACHE.pop(model, None)
    fresh = heatmaps(model, batch, [0, 0], method)
    np.testing.assert_allclose(after, fresh, atol=1e-5)
    assert not np.allclose(before, after, atol=1e-3)


def test_densenet_gradcam_targets_final_relu():
    m = build_model("chexnet", weights=None, image_size=32)
    assert cam_layer(m) == "relu"
    maps = heatmaps(m, np.zeros((1, 32, 32, 1), np.float32), [0], "gradcam")
    assert maps.shape == (1, 32, 32) and np.isfinite(maps).all()


@pytest.mark.parametrize("aspect", ["pad", "crop", "stretch"])
@pytest.mark.parametrize("w,h", [(300, 200), (160, 240), (256, 256)])
def test_known_lesion_maps_back_to_original(aspect, w, h):
    """A bright disc at a known original position; the 'heatmap' is the model-input image itself
    after prepare (fit to 64) and the pipeline (resize to 48). Back in original pixels, the peak
    must sit on the disc."""
    cx, cy = int(w * 0.6), int(h * 0.45)
    yy, xx = np.mgrid[:h, :w]
    original = np.where((xx - cx) ** 2 + (yy - cy) ** 2 <= 36, 255, 20).astype(np.uint8)
    stored, aff = fit(original, 64, aspect)
    model_input = preprocess_batch(tf.constant(stored[None, ..., None]), 48, dtype=tf.float32).numpy()[0, ..., 0]
    full = to_original(model_input, image_size=48, stored_size=64, affine=(aff.sx, aff.sy, aff.tx, aff.ty),
                       orig_size=(w, h))
    assert full.shape == (h, w)
    py, px = np.unravel_index(np.argmax(full), full.shape)
    assert abs(px - cx) <= 5 and abs(py - cy) <= 5
    mx, my = input_to_original(48 * ((cx + 0.5) * aff.sx + aff.tx) / 64, 48 * ((cy + 0.5) * aff.sy + aff.ty) / 64,
                               image_size=48, stored_size=64, affine=(aff.sx, aff.sy, aff.tx, aff.ty))
    assert mx == pytest.approx(cx + 0.5) and my == pytest.approx(cy + 0.5)
    # a box around the disc, moved into model input and back, is the same box
    place = dict(image_size=48, stored_size=64, affine=(aff.sx, aff.sy, aff.tx, aff.ty))
    bx, by, bw, bh = box_to_input((cx - 6, cy - 6, 12, 12), **place)
    (x0, x1), (y0, y1) = input_to_original([bx, bx + bw], [by, by + bh], **place)
    assert (x0, y0, x1 - x0, y1 - y0) == pytest.approx((cx - 6, cy - 6, 12, 12))
    assert abs(bx + bw / 2 - 48 * ((cx * aff.sx + aff.tx) / 64)) < 1e-6


def test_explain_cli_on_real_nih_images(shared_dir, tmp_path):
    from click.testing import CliRunner
    from cxr_tf.cli import main
    model = build_model("tiny", weights=None, image_size=64)
    model.save(tmp_path / "model.keras")
    images = [str(shared_dir / "nih/images/00000001_000.png"), str(shared_dir / "nih/images/00029539_000.png")]
    for method in METHODS:
        res = CliRunner().invoke(main, ["explain", str(tmp_path / "model.keras"), *images, "--method", method,
                                        "--finding", "Cardiomegaly", "--out", str(tmp_path / method)],
                                 catch_exceptions=False)
        assert res.exit_code == 0, (method, res.output)
        pngs = sorted((tmp_path / method).glob("*.png"))
        assert len(pngs) == 2 and all(p.stat().st_size > 5000 for p in pngs)
        heat = np.load(sorted((tmp_path / method).glob("00000001_000_*.npy"))[0])
        assert heat.shape == (512, 512) and np.isfinite(heat).all()     # the publisher's 512-px copy


def test_overlays_draw_boxes_keyed_without_the_extension(tmp_path, monkeypatch):
    """RSNA and SIIM key their boxes by the file name without ``.dcm``; NIH by the file name."""
    import pandas as pd
    from PIL import Image
    from cxr_tf.explain import run as explain_run

    model = build_model("tiny", weights=None, image_size=32)
    model.save(tmp_path / "model.keras")
    files = []
    for name in ("a1b2.png", "00000001_000.png"):
        Image.fromarray(np.full((40, 40), 90, np.uint8)).save(tmp_path / name)
        files.append(str(tmp_path / name))
    boxes = pd.DataFrame({"image_id": ["a1b2", "00000001_000.png"], "finding": ["Pneumonia", "Pneumonia"],
                          "x": [1.0, 2.0], "y": [1.0, 2.0], "w": [5.0, 6.0], "h": [5.0, 6.0]})
    monkeypatch.setattr(explain_run, "_known_boxes", lambda _: boxes)
    drawn = {}
    from cxr_tf.explain import overlay
    monkeypatch.setattr(overlay, "save_overlay",
                        lambda path, image, heat, title, gt, found: drawn.__setitem__(title.split(":")[0], gt))
    explain_run.explain_files(tmp_path / "model.keras", files, tmp_path / "out", finding="Pneumonia")
    assert drawn == {"a1b2.png": [(1.0, 1.0, 5.0, 5.0)], "00000001_000.png": [(2.0, 2.0, 6.0, 6.0)]}
