"""Custom layers, registered so ``.keras`` files load with :func:`cxr_tf.models.load_model`.

The first three make a model stand alone: it takes grayscale pixels as they come from disk
(0..255, uint8 or float, [B, H, W, 1]) and turns them into what its backbone's weights expect,
inside the graph (so on a GPU the cast and normalization run on the device, and a user who loads
the ``.keras`` file needs none of our preprocessing code). The prediction layer carries the
finding names and, once evaluate has chosen them, the operating thresholds.
"""

from __future__ import annotations

import keras
from keras import ops

from cxr_tf.models import presets

PACKAGE = "cxr_tf"


@keras.saving.register_keras_serializable(PACKAGE)
class Pixels(keras.layers.Layer):
    """The input contract: grayscale pixels on 0..255, cast to the compute dtype.

    ``stored_size`` and ``aspect`` record how the training images were made square before being
    resized to the input size (``cxr-tf prepare --size --aspect``), so an image file can be
    turned into input exactly as the training records were (:func:`cxr_tf.models.image_input`)."""

    def __init__(self, stored_size: int | None = None, aspect: str = "pad", **kwargs):
        super().__init__(**kwargs)
        self.stored_size = None if stored_size is None else int(stored_size)
        self.aspect = str(aspect)

    def call(self, x):
        return ops.cast(x, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "stored_size": self.stored_size, "aspect": self.aspect}


@keras.saving.register_keras_serializable(PACKAGE)
class GrayToRGB(keras.layers.Layer):
    """[B, H, W, 1] -> [B, H, W, 3], the gray value in every channel (ImageNet backbones)."""

    def call(self, x):
        return ops.repeat(x, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(PACKAGE)
class Normalize(keras.layers.Layer):
    """``out_c = x_c * scale_c + offset_c`` on 0..255 input: the backbone's normalization (a named
    entry of ``presets.toml``: ``imagenet``, ``caffe``, ``inception``, ``unit``). The coefficients
    are stored in the config, so a saved model keeps them whatever the data file says later."""

    def __init__(self, normalization: str = "imagenet", scale=None, offset=None, **kwargs):
        super().__init__(**kwargs)
        self.normalization = presets.normalization_name(normalization)
        if scale is None or offset is None:
            scale, offset = presets.normalization(self.normalization)
        self.scale, self.offset = [float(v) for v in scale], [float(v) for v in offset]

    def call(self, x):
        scale = ops.convert_to_tensor(self.scale, dtype=self.compute_dtype)
        offset = ops.convert_to_tensor(self.offset, dtype=self.compute_dtype)
        return x * scale + offset

    def get_config(self):
        return {**super().get_config(), "normalization": self.normalization, "scale": self.scale,
                "offset": self.offset}


class _Findings:
    """What a model's ``predictions`` layer carries: the finding names, in output order, and the
    per-finding operating thresholds (None until evaluate chooses them)."""

    def _set_findings(self, findings, thresholds, thresholds_rule):
        self.findings = [str(f) for f in findings]
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.thresholds_rule = thresholds_rule

    def _findings_config(self) -> dict:
        return {"findings": self.findings, "thresholds": self.thresholds, "thresholds_rule": self.thresholds_rule}


@keras.saving.register_keras_serializable(PACKAGE)
class FindingsDense(_Findings, keras.layers.Dense):
    """The prediction layer: one sigmoid unit per finding, carrying the finding names and the
    thresholds, so both travel with the saved model."""

    def __init__(self, findings, activation="sigmoid", thresholds=None, thresholds_rule=None, **kwargs):
        kwargs.pop("units", None)
        super().__init__(units=len(findings), activation=activation, **kwargs)
        self._set_findings(findings, thresholds, thresholds_rule)

    def cam_kernel(self, model):
        """[C, K] weights from the features to each finding's logit (what CAM weights maps by)."""
        return keras.ops.convert_to_numpy(self.kernel)

    def get_config(self):
        return {**super().get_config(), **self._findings_config()}


@keras.saving.register_keras_serializable(PACKAGE)
class FindingsLogits(keras.layers.Dense):
    """Three logits per finding (negative, positive, uncertain), [B, K, 3]: the head of a model
    with U-MultiClass findings. Training uses the logits (3-way softmax for the ``multiclass``
    findings, a sigmoid of l1 - l0 for the others); :class:`MulticlassProbability` turns them
    into the one-probability-per-finding output every cxr_tf model has."""

    def __init__(self, findings, multiclass=(), **kwargs):
        kwargs.pop("units", None)
        kwargs.pop("activation", None)
        super().__init__(units=3 * len(findings), **kwargs)
        self.findings, self.multiclass = [str(f) for f in findings], [str(f) for f in multiclass]

    def call(self, x):
        return ops.reshape(super().call(x), (-1, len(self.findings), 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.findings), 3)

    def get_config(self):
        return {**super().get_config(), "findings": self.findings, "multiclass": self.multiclass}


@keras.saving.register_keras_serializable(PACKAGE)
class MulticlassProbability(_Findings, keras.layers.Layer):
    """p1 / (p0 + p1) of a 3-way softmax, = sigmoid(l1 - l0): the probability of a finding whose
    uncertain class was learned apart (U-MultiClass, Irvin et al. 2019), reported as CheXpert
    does. ``activation`` is the sigmoid (tf-keras-vis' ReplaceToLinear swaps it for the logit)."""

    def __init__(self, findings, multiclass=(), activation="sigmoid", thresholds=None, thresholds_rule=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._set_findings(findings, thresholds, thresholds_rule)
        self.multiclass = [str(f) for f in multiclass]
        self.activation = keras.activations.get(activation)

    def call(self, logits):
        return self.activation(logits[..., 1] - logits[..., 0])

    def compute_output_shape(self, input_shape):
        return input_shape[:2]

    def cam_kernel(self, model):
        """[C, K] weights from the features to each finding's l1 - l0."""
        kernel = keras.ops.convert_to_numpy(model.get_layer("predictions_logits").kernel)
        k = kernel.reshape(kernel.shape[0], len(self.findings), 3)
        return k[..., 1] - k[..., 0]

    def get_config(self):
        return {**super().get_config(), **self._findings_config(), "multiclass": self.multiclass,
                "activation": keras.activations.serialize(self.activation)}


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


@keras.saving.register_keras_serializable(PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose TensorFlow training step is one fused kernel.

    Keras 3 normalizes with about twenty separate ops forward and thirty backward; TensorFlow's
    ``FusedBatchNormV3`` does each direction in one (oneDNN on CPU, cuDNN on GPU). DenseNet121's
    121 BN layers were a third of its training graph: the fused kernel cuts the first step's
    tracing and graph start-up and the steady step (``benchmarks/training_startup.py``). The math
    is Keras': batch statistics with the biased variance normalize, and the moving averages get
    ``m·moving + (1−m)·batch`` with the same biased variance (the kernel, which updates them
    itself, uses the unbiased one; its input and output are scaled so the result is Keras').
    Inference, other backends, masks, renorm, synchronized BN and inputs other than NHWC images
    take Keras' own path, so weights, config and outputs are the parent's."""

    def _fusable(self, inputs, training, mask) -> bool:
        return (training is True and self.trainable and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis % 4 == 3
                and keras.backend.backend() == "tensorflow"
                and keras.backend.result_type(inputs.dtype, "float32") == "float32")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)   # as Keras: statistics in float32 under mixed precision
        channels = x.shape[-1]
        # ops.cast reads the variables as Keras' own call does (under a mixed policy, through autocast)
        gamma = ops.cast(self.gamma, "float32") if self.scale else tf.ones([channels], tf.float32)
        beta = ops.cast(self.beta, "float32") if self.center else tf.zeros([channels], tf.float32)
        # The kernel updates the moving averages, r = (1-f)·v + f·s²·n/(n-1) with f = 1 - momentum;
        # given v·k it returns k·((1-f)·v + f·s²) for k = n/(n-1): Keras' update, biased s².
        if None in x.shape[:3]:
            n = tf.cast(tf.size(x) // channels, tf.float32)
            k = n / tf.maximum(n - 1.0, 1.0)
        else:
            n = x.shape[0] * x.shape[1] * x.shape[2]
            k = n / max(n - 1.0, 1.0)
        y, moving_mean, moving_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=ops.cast(self.moving_mean, "float32"),
            variance=ops.cast(self.moving_variance, "float32") * k, epsilon=self.epsilon,
            exponential_avg_factor=1.0 - self.momentum, data_format="NHWC", is_training=True)
        self.moving_mean.assign(moving_mean)
        self.moving_variance.assign(moving_variance / k)
        return tf.cast(y, self.compute_dtype)
