"""Models: one flat functional graph, the right CAM layer, names that survive save/load,
clear errors for unavailable weights."""

import numpy as np
import pytest
import keras

from cxr_tf.errors import CxrError
from cxr_tf.models import build_model, cam_layer, findings_of, load_model
from cxr_tf.models.build import WeightsUnavailable


@pytest.fixture(scope="module")
def densenet():
    return build_model("chexnet", weights=None, image_size=32)


def test_densenet_is_flat_with_cam_layer(densenet):
    assert not any(isinstance(layer, keras.Model) for layer in densenet.layers)
    assert cam_layer(densenet) == "relu"
    relu = densenet.get_layer("relu")
    assert relu.input.shape[-1] == 1024 and densenet.get_layer("bn").output is relu.input
    # the CAM layer is reachable from the input: a sub-model builds without "not connected" errors
    sub = keras.Model(densenet.inputs, [relu.output, densenet.output])
    feat, out = sub(np.zeros((1, 32, 32, 3), np.float32))
    assert feat.shape[-1] == 1024 and out.shape == (1, 14)
    assert findings_of(densenet)[0] == "Atelectasis" and len(findings_of(densenet)) == 14


@pytest.mark.parametrize("preset,layer,n", [("chestxray8", "transition_relu", 8), ("tiny", "tiny_relu", 14)])
def test_other_presets(preset, layer, n):
    m = build_model(preset, weights=None, image_size=64, transition_depth=16 if preset == "chestxray8" else None)
    assert m.output_shape == (None, n) and cam_layer(m) == layer
    assert not any(isinstance(x, keras.Model) for x in m.layers)
    if preset == "chestxray8":   # transition: 1x1 conv -> BN -> ReLU (the CAM layer) -> LSE
        assert not m.get_layer("transition").use_bias
        assert m.get_layer("transition_relu").input is m.get_layer("transition_bn").output
        assert m.get_layer("lse_pool").input is m.get_layer("transition_relu").output


@pytest.mark.parametrize("backbone,size,layer", [("resnet50", 32, "conv5_block3_out"), ("vgg16", 32, "block5_conv3"),
                                                 ("inception_v3", 75, "mixed10")])
def test_other_backbones_flat_with_cam_layer(backbone, size, layer):
    m = build_model(backbone=backbone, weights=None, image_size=size)
    assert cam_layer(m) == layer and not any(isinstance(x, keras.Model) for x in m.layers)
    assert m.get_layer(layer).output.shape[-1] > 0 and m.output_shape == (None, 14)


def test_save_load_identical_predictions(tmp_path):
    m = build_model("tiny", weights=None, findings=["A", "B", "C"])
    x = np.random.default_rng(0).random((3, 64, 64, 3), dtype=np.float32)
    m.save(tmp_path / "m.keras")
    back = load_model(tmp_path / "m.keras")
    assert findings_of(back) == ["A", "B", "C"]
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


def test_weights_errors(tmp_path):
    with pytest.raises(WeightsUnavailable, match="weights file not found.*--weights"):
        build_model("chexnet", weights=str(tmp_path / "nope.h5"), image_size=32)
    with pytest.raises(CxrError, match="model file not found"):
        load_model(tmp_path / "missing.keras")


def test_lse_pooling_limits():
    from cxr_tf.models.layers import LSEPooling
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype(np.float32) * 5
    big = LSEPooling(r=200.0)(x).numpy()
    np.testing.assert_allclose(big, x.max(axis=(1, 2)), atol=0.05)
    small = LSEPooling(r=1e-3)(x).numpy()
    np.testing.assert_allclose(small, x.mean(axis=(1, 2)), atol=0.05)
    r = 10.0
    want = np.log(np.mean(np.exp(r * x.astype(np.float64)), axis=(1, 2))) / r
    np.testing.assert_allclose(LSEPooling(r=r)(x).numpy(), want, rtol=1e-5)
    huge = LSEPooling(r=10.0)(np.full((1, 2, 2, 1), 1000.0, np.float32)).numpy()   # no overflow
    np.testing.assert_allclose(huge, [[1000.0]], rtol=1e-6)


def test_fused_adam_matches_keras_adam():
    from cxr_tf.optimizers import FusedAdam
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 64, 64, 3), dtype=np.float32), (rng.random((8, 14)) > 0.7).astype(np.float32)
    weights = []
    for opt in (keras.optimizers.Adam(1e-2), FusedAdam(1e-2)):
        keras.utils.set_random_seed(0)
        m = build_model("tiny", weights=None)
        m.compile(opt, "binary_crossentropy", jit_compile=False)
        for _ in range(3):
            m.train_on_batch(x, y)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
