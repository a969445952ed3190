"""The flat train function: fit with it trains exactly as with Keras' own nested one (same losses
and weights, epochs end when a finite dataset runs out, MirroredStrategy on two logical CPUs),
and Keras' own is kept where the flat one does not apply."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from cxr_tf.models import build_model
from cxr_tf.models.optimizers import FusedAdam
from cxr_tf.training.step import use_flat_train_function


def _data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 32, 32, 1)).astype(np.uint8)
    y = (rng.random((10, 14)) > 0.7).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)   # 3 batches, the last one of 2


def _fit(flat: bool, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("tiny", weights=None, image_size=32)
        model.compile(FusedAdam(1e-2), "binary_crossentropy")
        model.optimizer.build(model.trainable_variables)
    if flat:
        assert use_flat_train_function(model)
    batches = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    history = model.fit(_data(), epochs=2, verbose=0, callbacks=[Count()])
    return history.history["loss"], [w.numpy() for w in model.weights], batches


@pytest.mark.parametrize("mirrored", [False, True])
def test_fit_with_the_flat_function_equals_keras_own(mirrored):
    # reduction through one device, not collectives: collective keys restart with every strategy
    # and would clash with other in-process MirroredStrategy tests on the same two devices
    strategy = (tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
                if mirrored else None)
    loss_k, weights_k, batches_k = _fit(False, strategy)
    loss_f, weights_f, batches_f = _fit(True, strategy)
    assert batches_f == batches_k == [0, 1, 2, 0, 1, 2]   # each epoch ends when the data runs out
    np.testing.assert_allclose(loss_f, loss_k, rtol=1e-5)
    for f, k in zip(weights_f, weights_k):
        np.testing.assert_allclose(f, k, rtol=1e-4, atol=1e-5)


def test_keras_own_function_where_the_flat_one_does_not_apply():
    for kwargs in ({"jit_compile": True}, {"steps_per_execution": 2}, {"run_eagerly": True}):
        model = build_model("tiny", weights=None, image_size=32)
        model.compile(FusedAdam(1e-2), "binary_crossentropy", **kwargs)
        assert use_flat_train_function(model) is False and model.train_function is None
    model = build_model("tiny", weights=None, image_size=32)
    model.compile(FusedAdam(1e-2), "binary_crossentropy")
    assert use_flat_train_function(model) and model.train_function is not None
    model.compile(FusedAdam(1e-2), "binary_crossentropy")   # compile again: Keras' own until asked
    assert model.train_function is None
