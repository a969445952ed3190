"""Every heatmap method on a model whose true region is known: a tiny CNN set by hand so that only
bright pixels open its ReLUs, and only one finding reads them. The heatmap's peak must fall on the
bright square. Then the messages for heatmaps that are empty or not finite."""

import logging

import keras
import numpy as np
import pytest

from cxr_tf.core.errors import CxrError
from cxr_tf.explain import METHODS, heatmaps
from cxr_tf.explain.layered import fuse, specs, stage_layers, stage_map
from cxr_tf.explain.methods import empty_maps
from cxr_tf.models import build_model

SIZE = 64
SQUARE = (16, 32, 32, 48)     # rows 16..32, columns 32..48: one cell of the 4 x 4 final grid
OPTS = {"lime": {"samples": 60}, "smoothgrad": {"samples": 4}, "ig": {"steps": 8}}


def _known_region_model(bias: float = 0.0, sign: float = 1.0):
    """Averaging convolutions (all weights positive), identity batch norms, and a prediction layer
    whose finding 0 sums the last features: dark pixels normalise below zero and close every ReLU,
    so only the bright square can drive finding 0."""
    keras.utils.set_random_seed(0)
    model = build_model("tiny", weights=None, image_size=SIZE)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k = layer.get_weights()[0]
            layer.set_weights([np.full_like(k, 1.0 / (k.shape[0] * k.shape[1] * k.shape[2]))])
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([np.ones_like(w) if i in (0, 3) else np.zeros_like(w)
                               for i, w in enumerate(layer.get_weights())])
    pred = model.get_layer("predictions")
    kernel, b = pred.get_weights()
    kernel[:] = 0.0
    kernel[:, 0] = sign
    pred.set_weights([kernel, np.full_like(b, bias)])
    return model


def _image():
    x = np.zeros((1, SIZE, SIZE, 1), np.float32)
    r0, r1, c0, c1 = SQUARE
    x[0, r0:r1, c0:c1] = 255.0
    return x


def _peak_in_square(heat, margin=4):
    """The map's maximum is reached on the square (LIME's maps are flat per superpixel, so the
    maximum may be shared with the rest of the square's superpixel)."""
    r0, r1, c0, c1 = SQUARE
    return heat[max(r0 - margin, 0):r1 + margin, max(c0 - margin, 0):c1 + margin].max() >= heat.max() - 1e-6


@pytest.fixture(scope="module")
def known():
    return _known_region_model()


@pytest.mark.parametrize("method", METHODS)
def test_peak_falls_in_the_known_region(known, method):
    heat = heatmaps(known, _image(), [0], method, **OPTS.get(method, {}))[0]
    assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all() and heat.max() == pytest.approx(1.0)
    assert _peak_in_square(heat), f"{method}: peak at {np.unravel_index(int(np.argmax(heat)), heat.shape)}"
    r0, r1, c0, c1 = SQUARE
    assert heat[r0:r1, c0:c1].mean() > 2 * heat.mean(), method       # and the heat is concentrated there


@pytest.mark.parametrize("method", specs())
def test_layered_methods_are_finer_than_the_cam_grid(known, method):
    """A fused or earlier-stage map keeps more of its heat on the square than the 4 x 4 CAM,
    whose bilinear upsampling spreads heat a whole cell beyond it."""
    r0, r1, c0, c1 = SQUARE

    def inside(heat):
        return heat[r0:r1, c0:c1].sum() / heat.sum()
    coarse = heatmaps(known, _image(), [0], "gradcam")[0]
    assert inside(heatmaps(known, _image(), [0], method)[0]) > inside(coarse)


def test_stage_layers_come_from_the_preset(known):
    assert stage_layers(known) == ["tiny_relu1", "tiny_relu2", "tiny_relu"]
    chexnet = build_model("chexnet", weights=None, image_size=32)
    assert stage_layers(chexnet) == ["pool2_relu", "pool3_relu", "pool4_relu", "relu"]
    assert [int(chexnet.get_layer(n).output.shape[1]) for n in stage_layers(chexnet)] == [8, 4, 2, 1]  # strides 4..32


def test_a_backbone_with_fewer_stages_uses_the_ones_it_has(known):
    """The tiny CNN names three stages; the four-stage default reads those three, each once."""
    from cxr_tf.explain.layered import layered_heatmaps
    x = _image()
    four = layered_heatmaps(known, x, [0], kind="layercam", stages=(-4, -3, -2, -1), how="mean")
    three = layered_heatmaps(known, x, [0], kind="layercam", stages=(-3, -2, -1), how="mean")
    np.testing.assert_allclose(four, three, atol=1e-6)


def test_stage_maps_and_fusion_by_hand():
    rng = np.random.default_rng(0)
    acts, grads = rng.random((2, 3, 3, 4)), rng.normal(size=(2, 3, 3, 4))
    gradcam = np.maximum(np.einsum("bhwc,bc->bhw", acts, grads.mean(axis=(1, 2))), 0)
    np.testing.assert_allclose(stage_map("gradcam", acts, grads), gradcam)
    np.testing.assert_allclose(stage_map("layercam", acts, grads), (np.maximum(grads, 0) * acts).sum(-1))
    a, b = np.full((1, 2, 2), 0.25), np.ones((1, 2, 2))
    np.testing.assert_allclose(fuse([a, b], "product"), 0.5)
    np.testing.assert_allclose(fuse([a, b], "max"), 1.0)
    np.testing.assert_allclose(fuse([a, b], "mean"), 0.625)
    with pytest.raises(CxrError, match="unknown fusion"):
        fuse([a, b], "median")


def test_a_finding_at_probability_zero_still_has_a_map():
    """With a bias of -1e4 the sigmoid is exactly 0 in float32 and its gradient vanishes; the
    layered methods differentiate the logit, so the map is still there and still on the square."""
    model = _known_region_model(bias=-1e4)
    assert float(model.predict(_image(), verbose=0)[0, 0]) == 0.0
    for method in specs():
        heat = heatmaps(model, _image(), [0], method)[0]
        assert heat.max() == pytest.approx(1.0) and _peak_in_square(heat), method


def test_an_empty_heatmap_is_zero_and_explained(caplog):
    """A finding that every feature lowers: Grad-CAM's weights are all negative and the map is
    empty. It stays all zero (not normalised noise, not NaN) and the log says why."""
    model = _known_region_model(sign=-1.0)
    with caplog.at_level(logging.WARNING, logger="cxr_tf.explain.methods"):
        maps = heatmaps(model, _image(), [0], "gradcam-fine")
    assert np.isfinite(maps).all() and empty_maps(maps).all()
    assert "is empty (all zero)" in caplog.text and "'Atelectasis'" in caplog.text


def test_a_nan_heatmap_is_an_error_naming_the_finding(known):
    x = _image()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(CxrError, match=r"heatmap for image 0 .*'Atelectasis'.* not finite"):
        heatmaps(known, x, [0], "layercam")
