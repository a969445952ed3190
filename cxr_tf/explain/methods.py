"""The heatmap methods, batched, registered by name in :data:`METHODS`. Every method takes a
model's own input (grayscale pixels on 0..255, [B, H, W, 1]) and returns float32 [B, H, W] in
[0, 1] over the model input (each map normalized by its own maximum; an all-zero map stays zero)."""

from __future__ import annotations

import logging

import numpy as np

from cxr_tf.core.errors import CxrConfigError, CxrError
from cxr_tf.explain.registry import METHODS, _CACHE, cached as _cached, method, normalize as _normalize
from cxr_tf.explain.registry import resize as _resize
from cxr_tf.explain import layered  # noqa: F401  (registers the layered methods)

log = logging.getLogger(__name__)
__all__ = ["METHODS", "_CACHE", "empty_maps", "heatmaps", "method", "layered"]


@method("cam")
def cam(model, images, targets, layer: str | None = None, **_) -> np.ndarray:
    """Class activation maps (Zhou et al. 2016; CheXNet §6; ChestX-ray8's heatmap): the CAM
    layer's activations weighted by the prediction layer's weights for the target, no bias."""
    import keras

    from cxr_tf.models import cam_layer
    layer = layer or cam_layer(model)
    extractor = _cached(model, ("features", layer), lambda: keras.Model(model.inputs, model.get_layer(layer).output))
    feats = extractor.predict(images, verbose=0)
    kernel = model.get_layer("predictions").cam_kernel(model)            # [C, K]
    if kernel.shape[0] != feats.shape[-1]:
        raise CxrConfigError(f"CAM needs {layer!r} to feed the prediction layer directly "
                             f"({feats.shape[-1]} channels vs {kernel.shape[0]} weights)", key="method",
                             fix="gradcam")
    maps = np.einsum("bhwc,bc->bhw", feats, kernel[:, np.asarray(targets)].T)
    return _normalize(_resize(_normalize(maps), model.input_shape[1]))


def _tool(model, name: str):
    """The cached tf-keras-vis tool, synced to the model's current weights (a model may still be
    training: TensorBoard's per-epoch Grad-CAM)."""
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    if name == "smoothgrad":
        from tf_keras_vis.saliency import Saliency as Tool
    elif name == "gradcam":
        from tf_keras_vis.gradcam import Gradcam as Tool
    elif name == "gradcam++":
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus as Tool
    else:
        from tf_keras_vis.scorecam import Scorecam as Tool
    tool = _cached(model, name, lambda: Tool(model, model_modifier=ReplaceToLinear(), clone=True))
    tool.model.set_weights(model.get_weights())
    return tool


def _score(targets):
    from tf_keras_vis.utils.scores import CategoricalScore
    return CategoricalScore([int(t) for t in targets])


def _cam_family(name):
    def run(model, images, targets, layer: str | None = None, max_n: int = 32, **_):
        from cxr_tf.models import cam_layer
        kwargs = {"max_N": max_n} if name == "scorecam" else {}
        out = _tool(model, name)(_score(targets), images, penultimate_layer=layer or cam_layer(model),
                                 seek_penultimate_conv_layer=False, **kwargs)
        return _normalize(out)
    run.__name__ = name.replace("+", "p")
    run.__doc__ = (f"{name} (tf-keras-vis) at the preset's CAM layer, never tf-keras-vis' own choice"
                   + ("; ``max_n`` activation maps." if name == "scorecam" else "."))
    return run


for _name in ("gradcam", "gradcam++", "scorecam"):
    method(_name)(_cam_family(_name))


@method("smoothgrad")
def smoothgrad(model, images, targets, layer=None, samples: int = 20, noise: float = 0.2, **_) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017, tf-keras-vis): gradients averaged over ``samples`` noisy
    copies, noise ``noise`` times the input's range."""
    out = _tool(model, "smoothgrad")(_score(targets), images, smooth_samples=samples, smooth_noise=noise)
    return _normalize(out)


@method("ig")
def integrated_gradients(model, images, targets, layer=None, steps: int = 32, baseline=None, **_) -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017) from a black-image baseline (pixel value
    0), trapezoidal rule over ``steps``; |attribution| summed over channels."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images, tf.float32)
    base = tf.broadcast_to(tf.convert_to_tensor(0.0 if baseline is None else baseline, tf.float32), x.shape)
    idx = tf.constant(np.asarray(targets), tf.int32)
    grads = []
    for alpha in np.linspace(0.0, 1.0, steps + 1, dtype=np.float32):
        xi = base + alpha * (x - base)
        with tf.GradientTape() as tape:
            tape.watch(xi)
            sel = tf.gather(model(xi, training=False), idx, axis=1, batch_dims=1)
        grads.append(tape.gradient(sel, xi))
    g = tf.stack(grads)
    avg = tf.reduce_mean((g[:-1] + g[1:]) / 2.0, axis=0)
    return _normalize(tf.reduce_sum(tf.abs((x - base) * avg), axis=-1).numpy())


@method("lime")
def lime_maps(model, images, targets, layer=None, samples: int = 200, seed: int = 0, **_) -> np.ndarray:
    """LIME (Ribeiro et al. 2016, the ``lime`` package): quickshift superpixels weighted by a
    local linear model of the target's probability; positive weights only."""
    from lime import lime_image
    x = np.asarray(images, np.float32)
    out = np.zeros(x.shape[:3], np.float32)
    for i, t in enumerate(targets):
        def classify(batch):   # LIME perturbs an RGB picture on [0, 1]; the model takes gray 0..255
            return model.predict(np.asarray(batch, np.float32)[..., :1] * 255.0, verbose=0)
        picture = np.repeat(x[i] / 255.0, 3, axis=-1).astype(np.double)
        exp = lime_image.LimeImageExplainer(random_state=seed).explain_instance(
            picture, classify, labels=(int(t),), top_labels=None, num_samples=samples,
            batch_size=32, random_seed=seed)
        weights = dict(exp.local_exp[int(t)])
        out[i] = np.vectorize(lambda s: max(weights.get(s, 0.0), 0.0))(exp.segments)
    return _normalize(out)


def heatmaps(model, images, targets, method: str = "gradcam", layer: str | None = None, *,
             warn_empty: bool = True, **opts) -> np.ndarray:
    """Heatmaps for a batch: ``images`` as the model takes them (grayscale pixels on 0..255,
    [B, H, W, 1]), ``targets`` one output index per image. Returns float32 [B, H, W] in [0, 1].

    A map that comes out non-finite raises :class:`CxrError` naming the image and the finding
    (the model's output is NaN there); a map that comes out all zero (the target's gradient or
    weighted activations vanish) is returned as zeros and logged with the reason, never
    normalised into noise (``warn_empty=False`` logs it at debug level: TensorBoard's per-epoch
    images of a model still learning). :func:`empty_maps` tells which maps of a batch are empty."""
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets, np.int64).reshape(-1)
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    if method not in METHODS:
        raise CxrConfigError(f"unknown method {method!r}", key="method", choices=METHODS)
    maps = METHODS[method](model, images, targets, layer, **opts)
    return _checked(model, np.asarray(maps, np.float32), targets, method, warn_empty)


def empty_maps(maps: np.ndarray) -> np.ndarray:
    """[B] bool: which maps hold no signal at all (all zero)."""
    return np.asarray(maps).reshape(len(maps), -1).max(axis=1, initial=0.0) <= 0.0


def _checked(model, maps: np.ndarray, targets, method: str, warn_empty: bool = True) -> np.ndarray:
    from cxr_tf.models import findings_of
    try:
        names = findings_of(model)
    except Exception:   # a foreign model without finding names
        names = [str(i) for i in range(int(max(targets)) + 1)]
    bad = ~np.isfinite(maps.reshape(len(maps), -1)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CxrError(f"{method} heatmap for image {i} of the batch, finding {names[targets[i]]!r}, is not "
                       "finite (NaN or inf): the model's output for this image is not finite; check the "
                       "image (cxr-tf predict) and the model's weights")
    for i in np.flatnonzero(empty_maps(maps)):
        log.log(logging.WARNING if warn_empty else logging.DEBUG,
                "%s heatmap for image %d of the batch, finding %r, is empty (all zero): nothing in the "
                "image raises this finding's score at the explained layer (its gradient is zero or "
                "negative everywhere); the overlay shows no heat, not noise", method, i, names[targets[i]])
    return maps
