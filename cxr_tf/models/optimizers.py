"""Adam with TensorFlow's fused kernel: the same update as ``keras.optimizers.Adam``, traced as one
op per variable instead of about twenty.

Tracing the Keras Adam update for DenseNet121's ~360 variables takes several seconds of the first
training step on CPU (benchmarks/training_startup.py measures it); the fused op removes most of
that, and the step's scalars (β powers, learning rate, ε) are made once per step and dtype rather
than once per variable. On other backends, with ``amsgrad``, or for sparse gradients it falls back
to Keras' own update.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "cxr_tf"


@keras.saving.register_keras_serializable(PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose TensorFlow update is ``ResourceApplyAdam`` (same math:
    m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; θ ← θ − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m/(√v + ε))."""

    _step_scalars = None   # {dtype: the kernel's scalar inputs} while one update is being traced

    def _fused(self) -> bool:
        return keras.backend.backend() == "tensorflow" and not self.amsgrad

    def _scalars(self, dtype, learning_rate) -> dict:
        """The kernel's scalar inputs in ``dtype``: made once per update (and dtype) when the update
        runs through :meth:`_distributed_tf_update_step`, else for this variable alone."""
        cache = self._step_scalars if self._step_scalars is not None else {}
        if dtype not in cache:
            step = ops.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
            cache[dtype] = dict(beta1_power=ops.power(beta_1, step), beta2_power=ops.power(beta_2, step),
                                lr=ops.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                                epsilon=ops.cast(self.epsilon, dtype))
        return cache[dtype]

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """Keras' per-variable update loop, with the step's scalars shared by all variables."""
        if not self._fused():
            return super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)
        import tensorflow as tf

        self._step_scalars = {}
        try:
            if tf.distribute.has_strategy():
                return super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)
            for grad, var in grads_and_vars:   # the default strategy's update() adds only overhead
                self.update_step(grad, var, learning_rate)
        finally:
            self._step_scalars = None

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        if not self._fused() or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=m.value.handle, v=v.value.handle,
                                     grad=ops.cast(gradient, dtype), use_locking=False,
                                     **self._scalars(dtype, learning_rate))
