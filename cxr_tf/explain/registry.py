"""The heatmap registry (:data:`METHODS`) and the helpers every method shares: a per-model cache
of traced helpers, per-image normalization and resizing to the model input."""

from __future__ import annotations

import weakref

import numpy as np

# The default of `cxr-tf explain` and `cxr-tf localize`, and of recipes without a [localize] method:
# the method that localized best in benchmarks/localization.py (see the README's localization guide).
DEFAULT_METHOD = "layercam"
METHODS: dict = {}        # name -> function(model, images, targets, layer, **options)
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # model -> {key: helper}


def method(name: str):
    """Register a heatmap method under ``name``."""
    def register(fn):
        METHODS[name] = fn
        return fn
    return register


def cached(model, key, make):
    """One feature model / tf-keras-vis tool per (model, key), so batch after batch reuses its
    traced function instead of rebuilding (and retracing) it."""
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = make()
    return per_model[key]


def normalize(maps: np.ndarray) -> np.ndarray:
    """Clip negatives and divide each map by its own maximum (an all-zero map stays zero)."""
    maps = np.maximum(np.asarray(maps, np.float32), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


def resize(maps, size: int) -> np.ndarray:
    """[B, h, w] maps resized bilinearly (half-pixel centres) to [B, size, size]."""
    import tensorflow as tf
    return tf.image.resize(np.asarray(maps, np.float32)[..., None], [size, size], method="bilinear").numpy()[..., 0]
