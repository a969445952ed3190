"""Models: one flat functional graph that takes raw grayscale pixels, the right CAM layer, the
input layers' normalization equal to Keras' own preprocess_input, names and thresholds that
survive save/load, clear errors for unavailable weights, and Adam's update rule."""

import numpy as np
import pytest
import keras

from cxr_tf.models import presets
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.models import (INPUT_LAYERS, build_model, cam_layer, findings_of, input_size_of, load_model,
                           normalization_of, preprocessing_of, save_model, set_thresholds, thresholds_of)
from cxr_tf.models.build import WeightsUnavailable


@pytest.fixture(scope="module")
def densenet():
    return build_model("chexnet", weights=None, image_size=32)


def test_densenet_is_flat_with_input_layers_and_cam_layer(densenet):
    assert not any(isinstance(layer, keras.Model) for layer in densenet.layers)
    assert densenet.input_shape == (None, 32, 32, 1)
    assert [layer.name for layer in densenet.layers[1:4]] == list(INPUT_LAYERS)
    assert densenet.get_layer("conv1_conv").input is densenet.get_layer("normalize").output or \
        densenet.get_layer("normalize").output.shape[-1] == 3
    assert cam_layer(densenet) == "relu"
    relu = densenet.get_layer("relu")
    assert relu.input.shape[-1] == 1024 and densenet.get_layer("bn").output is relu.input
    # the CAM layer is reachable from the input: a sub-model builds without "not connected" errors
    sub = keras.Model(densenet.inputs, [relu.output, densenet.output])
    feat, out = sub(np.zeros((1, 32, 32, 1), np.float32))
    assert feat.shape[-1] == 1024 and out.shape == (1, 14)
    assert findings_of(densenet)[0] == "Atelectasis" and len(findings_of(densenet)) == 14


@pytest.mark.parametrize("preset,layer,n", [("chestxray8", "transition_relu", 8), ("tiny", "tiny_relu", 14),
                                            ("chexpert", "relu", 14)])
def test_other_presets(preset, layer, n):
    m = build_model(preset, weights=None, image_size=64, transition_depth=16 if preset == "chestxray8" else None)
    assert m.output_shape == (None, n) and cam_layer(m) == layer
    assert not any(isinstance(x, keras.Model) for x in m.layers)
    if preset == "chestxray8":   # transition: 1x1 conv -> BN -> ReLU (the CAM layer) -> LSE
        assert not m.get_layer("transition").use_bias
        assert m.get_layer("transition_relu").input is m.get_layer("transition_bn").output
        assert m.get_layer("lse_pool").input is m.get_layer("transition_relu").output
    if preset == "chexpert":     # the CheXpert observations, not the ChestX-ray14 findings
        assert findings_of(m)[:3] == ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly"]


@pytest.mark.parametrize("backbone,size,layer,norm", [("resnet50", 32, "conv5_block3_out", "caffe"),
                                                      ("vgg16", 32, "block5_conv3", "caffe"),
                                                      ("inception_v3", 75, "mixed10", "inception")])
def test_other_backbones_flat_with_cam_layer(backbone, size, layer, norm):
    m = build_model(backbone=backbone, weights=None, image_size=size)
    assert cam_layer(m) == layer and not any(isinstance(x, keras.Model) for x in m.layers)
    assert m.get_layer(layer).output.shape[-1] > 0 and m.output_shape == (None, 14)
    assert normalization_of(m) == norm == normalization_of(backbone)


@pytest.mark.parametrize("name,app", [("imagenet", "densenet"), ("caffe", "resnet50"), ("caffe", "vgg16"),
                                      ("inception", "inception_v3")])
def test_input_layers_equal_keras_preprocess_input(name, app):
    """Gray pixels through our cast -> to_rgb -> normalize equal the Keras application's own
    preprocess_input on the gray image repeated over three channels."""
    import importlib
    model = build_model("tiny", weights=None, image_size=16, normalization=name)
    front = keras.Model(model.inputs, model.get_layer("normalize").output)
    gray = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1)).astype(np.uint8)
    want = importlib.import_module(f"keras.applications.{app}").preprocess_input(
        np.repeat(gray, 3, axis=-1).astype(np.float32))
    np.testing.assert_allclose(front.predict(gray, verbose=0), want, rtol=1e-5, atol=1e-4)
    assert front.predict(gray.astype(np.float32), verbose=0) == pytest.approx(want, rel=1e-5, abs=1e-4)


def test_save_load_keeps_everything_the_model_needs(tmp_path):
    m = build_model("tiny", weights=None, findings=["A", "B", "C"], stored_size=80, aspect="crop")
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 1)).astype(np.uint8)
    assert thresholds_of(m) is None
    set_thresholds(m, {"A": 0.1, "B": 0.2, "C": 0.3}, "test rule")
    save_model(m, tmp_path / "m.keras")
    back = load_model(tmp_path / "m.keras")
    assert findings_of(back) == ["A", "B", "C"] and input_size_of(back) == 64
    assert thresholds_of(back) == {"A": 0.1, "B": 0.2, "C": 0.3}
    assert preprocessing_of(back) == {"input_size": 64, "stored_size": 80, "aspect": "crop",
                                      "normalization": "imagenet"}
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    with pytest.raises(CxrConfigError, match="no threshold for"):
        set_thresholds(back, {"A": 0.5})
    assert not list(tmp_path.glob("*partial*"))


def test_weights_errors(tmp_path):
    with pytest.raises(WeightsUnavailable, match="weights file not found") as err:
        build_model("chexnet", weights=str(tmp_path / "nope.h5"), image_size=32)
    assert "--weights" in err.value.cli_message() and "densenet121_weights" in err.value.cli_message()
    with pytest.raises(CxrConfigError) as err:
        build_model("tiny", weights="imagenet")
    assert err.value.cli_message().endswith("use --weights none")
    with pytest.raises(CxrDataError, match="model file not found"):
        load_model(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(CxrDataError, match="cannot load model"):
        load_model(tmp_path / "junk.keras")


def test_local_weights_file_in_keras_legacy_h5_format(tmp_path):
    """The offline route for ImageNet weights: a no-top weights file in the format Keras
    publishes (legacy HDF5, layer by layer) loads into our graph, input layers and all."""
    from keras.src.legacy.saving import legacy_h5_format
    import h5py
    donor = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / presets.backbone("vgg16")["weights_file"]
    with h5py.File(path, "w") as fh:
        legacy_h5_format.save_weights_to_hdf5_group(fh, donor)
    model = build_model(backbone="vgg16", weights=str(path), image_size=32)
    np.testing.assert_array_equal(model.get_layer("block5_conv3").get_weights()[0],
                                  donor.get_layer("block5_conv3").get_weights()[0])


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


def _adam_reference(w, grads, lr, b1=0.9, b2=0.999, eps=1e-7):
    """Keras' Adam update in float64 NumPy (epsilon outside the square root, bias correction
    folded into the step size)."""
    w, m, v = w.astype(np.float64), np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return w


def test_fused_adam_update_rule_on_fixed_gradients():
    """The update on the same fixed gradients: FusedAdam equals keras.optimizers.Adam and a NumPy
    reference. (Training two models end to end would compare oneDNN kernel choices instead, which
    differ between graphs on some CPUs and which Adam amplifies.)"""
    import tensorflow as tf

    from cxr_tf.models.optimizers import FusedAdam
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(7, 5)).astype(np.float32)
    grads = [rng.normal(size=(7, 5)).astype(np.float32) * s for s in (1.0, 0.1, 3.0, 1e-3)]
    out = []
    for opt in (keras.optimizers.Adam(1e-2), FusedAdam(1e-2)):
        var = tf.Variable(w0)
        opt.build([var])
        for g in grads:
            opt.apply_gradients([(tf.constant(g), var)])
        out.append(var.numpy())
    np.testing.assert_allclose(out[1], out[0], rtol=1e-6, atol=1e-6)   # a few float32 ulps
    np.testing.assert_allclose(out[1], _adam_reference(w0, grads, 1e-2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mirrored", [False, True])
def test_fused_adam_traced_step_shares_scalars_and_equals_adam(mirrored):
    """A traced update over several variables (the step's scalars made once per step and dtype),
    alone with two dtypes and under MirroredStrategy on two logical CPUs (one dtype: Keras'
    all-reduce concatenates the gradients): the same as Keras' Adam."""
    import tensorflow as tf

    from cxr_tf.models.optimizers import FusedAdam
    rng = np.random.default_rng(1)
    w0 = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32),
          rng.normal(size=(2, 2)).astype(np.float32 if mirrored else np.float64)]
    grads = [[rng.normal(size=w.shape).astype(w.dtype) for w in w0] for _ in range(3)]
    # reduction through one device, not collectives: collective keys restart with every strategy
    # and would clash with later in-process MirroredStrategy tests on the same two devices
    strategy = (tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
                if mirrored else tf.distribute.get_strategy())
    out = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        with strategy.scope():
            opt = cls(1e-2)
            vars_ = [keras.Variable(w) for w in w0]
            opt.build(vars_)

        def replica_step(gs):
            with tf.GradientTape() as tape:   # d loss / d v = g
                loss = tf.add_n([tf.reduce_sum(tf.cast(v.value * g, tf.float64)) for v, g in zip(vars_, gs)])
            opt.apply(tape.gradient(loss, [v.value for v in vars_]), vars_)

        @tf.function
        def step(gs):
            strategy.run(replica_step, args=(gs,))

        for gs in grads:
            # under the mirror the replicas' gradients are summed: each replica gets half
            step([tf.constant(g / (2 if mirrored else 1)) for g in gs])
        out.append([v.numpy() for v in vars_])
        assert int(opt.iterations.numpy()) == len(grads)
    for got, want, w in zip(out[1], out[0], range(3)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got, _adam_reference(w0[w], [g[w] for g in grads], 1e-2), rtol=1e-5, atol=1e-6)
