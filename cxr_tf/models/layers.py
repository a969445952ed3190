"""Custom layers, registered so ``.keras`` files load with :func:`cxr_tf.models.load_model`."""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "cxr_tf"


@keras.saving.register_keras_serializable(PACKAGE)
class FindingsDense(keras.layers.Dense):
    """The prediction layer: one sigmoid unit per finding, carrying the finding names, so they
    travel with the saved model."""

    def __init__(self, findings, activation="sigmoid", **kwargs):
        kwargs.pop("units", None)
        super().__init__(units=len(findings), activation=activation, **kwargs)
        self.findings = [str(f) for f in findings]

    def get_config(self):
        return {**super().get_config(), "findings": self.findings}


@keras.saving.register_keras_serializable(PACKAGE)
class LSEPooling(keras.layers.Layer):
    """Log-Sum-Exp pooling (Wang et al. 2017): x = x* + (1/r) log(mean(exp(r (x_ij − x*)))),
    with x* = max x_ij for numerical stability. r → 0 approaches mean, r → ∞ max pooling."""

    def __init__(self, r: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.r = float(r)

    def call(self, x):
        x_max = ops.max(x, axis=(1, 2), keepdims=True)
        lse = ops.log(ops.mean(ops.exp(self.r * (x - x_max)), axis=(1, 2))) / self.r
        return lse + ops.squeeze(x_max, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3])

    def get_config(self):
        return {**super().get_config(), "r": self.r}
