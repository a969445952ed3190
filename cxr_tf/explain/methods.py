"""The heatmap methods, batched. Every method returns float32 [B, H, W] in [0, 1] over the model
input (each map normalized by its own maximum; an all-zero map stays zero)."""

from __future__ import annotations

import logging
import weakref

import numpy as np

log = logging.getLogger(__name__)
METHODS = ("cam", "gradcam", "gradcam++", "scorecam", "smoothgrad", "ig", "lime")
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # model -> {key: helper}


def _cached(model, key, make):
    """One feature model / tf-keras-vis tool per (model, key), so batch after batch reuses its
    traced function instead of rebuilding (and retracing) it."""
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = make()
    return per_model[key]


def _normalize(maps: np.ndarray) -> np.ndarray:
    maps = np.maximum(np.asarray(maps, np.float32), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


def _resize(maps, size: int) -> np.ndarray:
    import tensorflow as tf
    return tf.image.resize(np.asarray(maps, np.float32)[..., None], [size, size], method="bilinear").numpy()[..., 0]


def cam(model, images, targets, layer: str | None = None) -> np.ndarray:
    """Class activation maps (Zhou et al. 2016; CheXNet §6; ChestX-ray8's heatmap): the CAM
    layer's activations weighted by the prediction layer's weights for the target, no bias."""
    import keras

    from cxr_tf.models import cam_layer
    layer = layer or cam_layer(model)
    extractor = _cached(model, ("features", layer), lambda: keras.Model(model.inputs, model.get_layer(layer).output))
    feats = extractor.predict(images, verbose=0)
    kernel = model.get_layer("predictions").get_weights()[0]              # [C, K]
    if kernel.shape[0] != feats.shape[-1]:
        raise ValueError(f"CAM needs {layer!r} to feed the prediction layer directly "
                         f"({feats.shape[-1]} channels vs {kernel.shape[0]} weights); use gradcam")
    maps = np.einsum("bhwc,bc->bhw", feats, kernel[:, np.asarray(targets)].T)
    return _normalize(_resize(_normalize(maps), model.input_shape[1]))


def _tfkv(model, images, targets, method: str, layer: str | None, **opts) -> np.ndarray:
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from cxr_tf.models import cam_layer
    score = CategoricalScore([int(t) for t in targets])
    if method == "smoothgrad":
        from tf_keras_vis.saliency import Saliency
        tool = _cached(model, "smoothgrad", lambda: Saliency(model, model_modifier=ReplaceToLinear(), clone=True))
        tool.model.set_weights(model.get_weights())
        out = tool(score, images, smooth_samples=opts.get("samples", 20), smooth_noise=opts.get("noise", 0.2))
        return _normalize(out)
    layer = layer or cam_layer(model)
    if method == "gradcam":
        from tf_keras_vis.gradcam import Gradcam as Tool
    elif method == "gradcam++":
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus as Tool
    else:
        from tf_keras_vis.scorecam import Scorecam as Tool
    tool = _cached(model, method, lambda: Tool(model, model_modifier=ReplaceToLinear(), clone=True))
    tool.model.set_weights(model.get_weights())     # the clone must follow a model still training
    kwargs = {"max_N": opts.get("max_n", 32)} if method == "scorecam" else {}
    out = tool(score, images, penultimate_layer=layer, seek_penultimate_conv_layer=False, **kwargs)
    return _normalize(out)


def integrated_gradients(model, images, targets, baseline=None, steps: int = 32) -> np.ndarray:
    """Integrated Gradients (Sundararajan et al. 2017) from a black-image baseline (in the
    model's normalized input space), trapezoidal rule over ``steps``; |attribution| summed over
    channels."""
    import tensorflow as tf

    from cxr_tf.models import normalization_of
    from cxr_tf.pipeline import normalize_gray
    x = tf.convert_to_tensor(images, tf.float32)
    if baseline is None:
        baseline = normalize_gray(tf.zeros([1, 1, 1, 1]), normalization_of(model))
    base = tf.broadcast_to(tf.convert_to_tensor(baseline, tf.float32), x.shape)
    idx = tf.constant(np.asarray(targets), tf.int32)
    grads = []
    for alpha in np.linspace(0.0, 1.0, steps + 1, dtype=np.float32):
        xi = base + alpha * (x - base)
        with tf.GradientTape() as tape:
            tape.watch(xi)
            out = model(xi, training=False)
            sel = tf.gather(out, idx, axis=1, batch_dims=1)
        grads.append(tape.gradient(sel, xi))
    g = tf.stack(grads)
    avg = tf.reduce_mean((g[:-1] + g[1:]) / 2.0, axis=0)
    return _normalize(tf.reduce_sum(tf.abs((x - base) * avg), axis=-1).numpy())


def lime_maps(model, images, targets, samples: int = 200, seed: int = 0) -> np.ndarray:
    """LIME (Ribeiro et al. 2016, the ``lime`` package): quickshift superpixels weighted by a
    local linear model of the target's probability; positive weights only."""
    from lime import lime_image
    x = np.asarray(images, np.float32)
    lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
    display = (x - lo) / np.maximum(hi - lo, 1e-6)          # LIME segments a [0, 1] picture
    out = np.zeros(x.shape[:3], np.float32)
    for i, t in enumerate(targets):
        def classify(batch, i=i):
            return model.predict(np.asarray(batch, np.float32) * (hi[i] - lo[i]) + lo[i], verbose=0)
        exp = lime_image.LimeImageExplainer(random_state=seed).explain_instance(
            display[i].astype(np.double), classify, labels=(int(t),), top_labels=None,
            num_samples=samples, batch_size=32, random_seed=seed)
        weights = dict(exp.local_exp[int(t)])
        out[i] = np.vectorize(lambda s: max(weights.get(s, 0.0), 0.0))(exp.segments)
    return _normalize(out)


def heatmaps(model, images, targets, method: str = "gradcam", layer: str | None = None, **opts) -> np.ndarray:
    """Heatmaps for a batch: ``images`` [B, H, W, 3] as the model takes them (normalized),
    ``targets`` one output index per image. Returns float32 [B, H, W] in [0, 1]."""
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets, np.int64).reshape(-1)
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    if method == "cam":
        return cam(model, images, targets, layer)
    if method in ("gradcam", "gradcam++", "scorecam", "smoothgrad"):
        return _tfkv(model, images, targets, method, layer, **opts)
    if method == "ig":
        return integrated_gradients(model, images, targets, steps=opts.get("steps", 32))
    if method == "lime":
        return lime_maps(model, images, targets, samples=opts.get("samples", 200))
    raise ValueError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
