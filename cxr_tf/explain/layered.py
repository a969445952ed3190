"""Gradient CAMs at any depth of the backbone, batched, from the target's logit.

The stride-32 map of the last stage (7 x 7 at 224 px on DenseNet121) is too coarse to draw a
tight box: its oracle ceiling (``benchmarks/localization_ceiling.py``) caps what Grad-CAM there can
reach. The methods here read one or several earlier stages as well:

- ``gradcam``: channel weights = the spatial mean of the gradient (Selvaraju et al. 2017);
- ``gradcam++``: weights from the positive gradients with Grad-CAM++'s alphas (Chattopadhay et
  al. 2018, the closed form for an exponential score);
- ``layercam``: each position weighted by its own positive gradient (Jiang et al. 2021), which
  stays faithful at shallow stages where a channel-wide weight blurs.

Which stages and how several combine is data: ``layered.toml`` (one registry entry per table),
with the stages named per backbone in ``presets.toml`` (``stage_layers``). One traced function per
(model, stages) returns every stage's activations and gradients in one pass.

Gradients come from the finding's logit (the prediction layer's pre-activation), not from its
sigmoid: at a probability of 0 or 1 in float32 the sigmoid's gradient is exactly zero and the
map would be empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cxr_tf.core.errors import CxrConfigError
from cxr_tf.core.settings import read_toml
from cxr_tf.explain.registry import cached, method, normalize, resize

log = logging.getLogger(__name__)
SPECS_PATH = Path(__file__).with_name("layered.toml")
KINDS = ("gradcam", "gradcam++", "layercam")
FUSIONS = ("max", "mean", "product")


def stage_layers(model) -> list[str]:
    """The activations ending the backbone's last stages, finest first; the last one is the
    model's CAM layer (the ChestX-ray8 head's transition layer where there is one). An ensemble,
    or a backbone without ``stage_layers``, has only its CAM layer."""
    from cxr_tf.models import backbone_of, cam_layer
    from cxr_tf.models import presets
    last = cam_layer(model)
    try:
        names = list(presets.backbone(backbone_of(model)).get("stage_layers", []))
    except Exception:   # an ensemble or a foreign model: no backbone name to look up
        names = []
    names = [n for n in names if n != last and _has(model, n)]
    return names + [last]


def _has(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def _logit_source(model):
    """(tensor, to_logit): the symbolic tensor the finding logits are computed from, and the
    function that turns it into [B, K] logits inside the gradient tape."""
    import tensorflow as tf

    from cxr_tf.models.layers import FindingsDense, MulticlassProbability
    names = {layer.name for layer in model.layers}
    pred = model.get_layer("predictions") if "predictions" in names else None
    if isinstance(pred, FindingsDense):
        def dense_logits(t):
            out = tf.matmul(t, pred.kernel)
            return out + pred.bias if pred.use_bias else out
        return pred.input, dense_logits
    if isinstance(pred, MulticlassProbability) and "predictions_logits" in names:
        return model.get_layer("predictions_logits").output, lambda t: t[..., 1] - t[..., 0]
    log.info("%s: no logit layer found; gradients are taken from the log-odds of the output", model.name)

    def log_odds(p):
        p = tf.clip_by_value(p, 1e-7, 1.0 - 1e-7)
        return tf.math.log(p) - tf.math.log1p(-p)
    return model.outputs[0], log_odds


def _engine(model, layers: tuple[str, ...]):
    """A traced function (images, targets) -> (activations per layer, gradients per layer,
    target logits), cached per model and layer set."""
    def make():
        import keras
        import tensorflow as tf
        source, to_logit = _logit_source(model)
        features = keras.Model(model.inputs, [model.get_layer(n).output for n in layers] + [source])

        @tf.function(reduce_retracing=True)
        def run(x, targets):
            with tf.GradientTape() as tape:
                outs = features(x, training=False)
                acts = list(outs[:-1])
                logits = tf.gather(to_logit(outs[-1]), targets, axis=1, batch_dims=1)
                total = tf.reduce_sum(logits)      # inside the tape, or no gradient is recorded
            return acts, tape.gradient(total, acts), logits
        return run
    return cached(model, ("layered", layers), make)


def stage_map(kind: str, acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """One stage's map, [B, h, w] (ReLU applied), from activations and gradients [B, h, w, C]."""
    if kind == "gradcam":
        weights = grads.mean(axis=(1, 2))
        return np.maximum(np.einsum("bhwc,bc->bhw", acts, weights), 0.0)
    if kind == "gradcam++":
        g2, g3 = grads ** 2, grads ** 3
        denom = 2.0 * g2 + acts.sum(axis=(1, 2), keepdims=True) * g3
        alpha = g2 / np.where(denom != 0.0, denom, 1.0)
        weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(1, 2))
        return np.maximum(np.einsum("bhwc,bc->bhw", acts, weights), 0.0)
    if kind == "layercam":
        return np.maximum((np.maximum(grads, 0.0) * acts).sum(axis=-1), 0.0)
    raise CxrConfigError(f"unknown layered heatmap kind {kind!r}", key="kind", choices=KINDS)


def fuse(maps: list[np.ndarray], how: str) -> np.ndarray:
    """Combine per-stage maps (each [B, H, W] on [0, 1]) into one."""
    stack = np.stack(maps)
    if how == "max":
        return stack.max(axis=0)
    if how == "mean":
        return stack.mean(axis=0)
    if how == "product":
        return np.prod(stack, axis=0) ** (1.0 / len(maps))
    raise CxrConfigError(f"unknown fusion {how!r}", key="fuse", choices=FUSIONS)


def layered_heatmaps(model, images, targets, *, kind: str, stages=(-1,), how: str = "product",
                     layers=None) -> np.ndarray:
    """Maps [B, H, W] on [0, 1] at the model input: ``kind`` at each of ``stages`` (negative
    indices into :func:`stage_layers`, or explicit ``layers``), upsampled, scaled to [0, 1] per
    image, and fused ``how``."""
    import tensorflow as tf
    if layers is None:
        available = stage_layers(model)
        layers = tuple(dict.fromkeys(available[max(s, -len(available))] for s in stages))
    run = _engine(model, tuple(layers))
    acts, grads, _ = run(tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(targets, tf.int32))
    size = int(model.input_shape[1])
    maps = [normalize(resize(stage_map(kind, a.numpy(), g.numpy()), size)) for a, g in zip(acts, grads)]
    return normalize(fuse(maps, how)) if len(maps) > 1 else maps[0]


def target_logits(model, images, targets) -> np.ndarray:
    """The targets' logits for a batch (what the layered methods differentiate), [B]."""
    import tensorflow as tf
    run = _engine(model, (stage_layers(model)[-1],))
    return run(tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(targets, tf.int32))[2].numpy()


def specs() -> dict:
    """The registered layered methods: name -> {kind, stages, fuse, summary}."""
    return read_toml(SPECS_PATH, "layered heatmap methods")


def _register(name: str, spec: dict) -> None:
    kind, stages, how = spec["kind"], tuple(spec["stages"]), spec.get("fuse", "product")

    def run(model, images, targets, layer=None, **_):
        return layered_heatmaps(model, images, targets, kind=kind, stages=stages, how=how,
                                layers=(layer,) if layer else None)
    run.__name__ = name.replace("-", "_").replace("+", "p")
    run.__doc__ = spec.get("summary", name) + " (the target's logit; batched)."
    method(name)(run)


for _name, _spec in specs().items():
    _register(_name, _spec)
