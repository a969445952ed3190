"""FusedBatchNormalization: the same training math as Keras' BatchNormalization (outputs,
gradients, moving statistics) in one fused kernel; Keras' own path wherever it does not apply;
models built or loaded by cxr_tf use it, and its training graph holds no unfused BN ops."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from cxr_tf.models import build_model, fuse_batch_norm, load_model, save_model
from cxr_tf.models.layers import FusedBatchNormalization


def _train(cls, x, steps=3, graph=True, batch_spec=None, **kwargs):
    """Outputs, gradients (input, gamma, beta) and weights after ``steps`` training calls of a BN
    layer built from the same random weights."""
    layer = cls(epsilon=1e-3, **kwargs)
    layer.build(x.shape)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") ** 2 + 0.5 for w in layer.get_weights()])

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x, training=True), tf.float32)
            loss = tf.reduce_sum(y * tf.sin(y))
        return y, tape.gradient(loss, [x, *layer.trainable_variables])

    fn = tf.function(step, input_signature=[batch_spec] if batch_spec else None) if graph else step
    for _ in range(steps):
        y, grads = fn(x)
    return [y.numpy(), *(g.numpy() for g in grads), *(w.numpy() for w in layer.weights)]


def _assert_same(got, want, rtol):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * (np.abs(w).max() + 1e-6))


@pytest.mark.parametrize("shape", [(4, 7, 7, 5), (2, 1, 1, 3)])   # n = 196 and n = 2: the variance correction
@pytest.mark.parametrize("momentum", [0.99, 0.9, 0.0, 1.0])
@pytest.mark.parametrize("graph", [True, False])
def test_fused_training_equals_keras(shape, momentum, graph):
    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32") * 3 + 1)
    want = _train(keras.layers.BatchNormalization, x, graph=graph, momentum=momentum)
    got = _train(FusedBatchNormalization, x, graph=graph, momentum=momentum)
    _assert_same(got, want, 1e-5)
    # the moving variance is Keras' biased one: after one step from 1 at momentum 0 it is the
    # batch's population variance
    if momentum == 0.0:
        np.testing.assert_allclose(got[-1], x.numpy().reshape(-1, shape[-1]).var(axis=0), rtol=1e-5)


def test_fused_training_with_unknown_batch_size_and_no_scale_or_center():
    x = tf.constant(np.random.default_rng(2).normal(size=(3, 5, 5, 4)).astype("float32"))
    spec = tf.TensorSpec([None, 5, 5, 4], tf.float32)
    for kwargs in ({}, {"scale": False, "center": False}):
        want = _train(keras.layers.BatchNormalization, x, batch_spec=spec, momentum=0.9, **kwargs)
        _assert_same(_train(FusedBatchNormalization, x, batch_spec=spec, momentum=0.9, **kwargs), want, 1e-5)


def test_fused_under_mixed_bfloat16_equals_keras():
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 6, 6, 8)).astype("float32") * 2)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        want = _train(keras.layers.BatchNormalization, tf.cast(x, tf.bfloat16), momentum=0.9)
        got = _train(FusedBatchNormalization, tf.cast(x, tf.bfloat16), momentum=0.9)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert got[0].dtype == want[0].dtype   # bfloat16 out, as Keras
    _assert_same([g.astype(np.float32) for g in got], [w.astype(np.float32) for w in want], 2e-2)
    _assert_same(got[-2:], want[-2:], 1e-5)   # the moving statistics stay float32-exact


def test_keras_path_where_fusing_does_not_apply():
    """Inference, frozen layers, 2-D inputs and masks take Keras' own computation."""
    rng = np.random.default_rng(4)
    x4 = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    for x, kwargs, call in [(x4, {}, {"training": False}), (x4, {"trainable": False}, {"training": True}),
                            (rng.normal(size=(6, 4)).astype("float32"), {}, {"training": True}),
                            (rng.normal(size=(2, 5, 4)).astype("float32"), {}, {"training": True,
                                                                                "mask": np.ones((2, 5), bool)})]:
        a, b = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
        a.build(x.shape), b.build(x.shape)
        b.set_weights([w + 0.3 for w in a.get_weights()])
        a.set_weights(b.get_weights())
        np.testing.assert_array_equal(b(x, **call).numpy(), a(x, **call).numpy())
        for wa, wb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(wb.numpy(), wa.numpy())


def test_models_use_it_and_their_training_graph_has_no_unfused_bn(tmp_path):
    model = build_model("tiny", weights=None, image_size=32)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(type(layer) is FusedBatchNormalization for layer in bns)

    @tf.function
    def forward(x):
        return model(x, training=True)

    graph = forward.get_concrete_function(tf.TensorSpec([2, 32, 32, 1], tf.uint8)).graph
    kinds = [op.type for op in graph.get_operations()]
    assert kinds.count("FusedBatchNormV3") == len(bns)
    assert "Rsqrt" not in kinds and "SquaredDifference" not in kinds   # Keras' unfused moments

    # a model saved with Keras' own layer (before the fused one existed) loads fused, same weights
    plain = build_model("tiny", weights=None, image_size=32)
    for layer in plain.layers:
        if type(layer) is FusedBatchNormalization:
            layer.__class__ = keras.layers.BatchNormalization
    save_model(plain, tmp_path / "plain.keras")
    loaded = load_model(tmp_path / "plain.keras")
    assert all(type(layer) is FusedBatchNormalization for layer in loaded.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    x = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 1)).astype(np.uint8)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), plain.predict(x, verbose=0))
    # and the fused model round-trips as itself
    save_model(model, tmp_path / "fused.keras")
    again = load_model(tmp_path / "fused.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert fuse_batch_norm(again) is again
