"""Adam with TensorFlow's fused kernel: the same update as ``keras.optimizers.Adam``, traced as one
op per variable instead of about twenty.

Tracing the Keras Adam update for DenseNet121's ~360 variables takes several seconds of the first
training step on CPU (benchmarks/training_startup.py measures it); the fused op removes most of
that. On other backends, with ``amsgrad``, or for sparse gradients it falls back to Keras' own
update.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "cxr_tf"


@keras.saving.register_keras_serializable(PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose TensorFlow update is ``ResourceApplyAdam`` (same math:
    m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; θ ← θ − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m/(√v + ε))."""

    def _fused(self) -> bool:
        return keras.backend.backend() == "tensorflow" and not self.amsgrad

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        if not self._fused() or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.value.handle, v=v.value.handle,
            beta1_power=ops.power(ops.cast(self.beta_1, dtype), step),
            beta2_power=ops.power(ops.cast(self.beta_2, dtype), step),
            lr=ops.cast(learning_rate, dtype), beta1=ops.cast(self.beta_1, dtype),
            beta2=ops.cast(self.beta_2, dtype), epsilon=ops.cast(self.epsilon, dtype),
            grad=ops.cast(gradient, dtype), use_locking=False)
