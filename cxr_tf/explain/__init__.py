"""Heatmaps for cxr_tf models, in model-input or original-image coordinates.

    from cxr_tf.explain import heatmaps, to_original
    maps = heatmaps(model, pixels, targets=[1, 2], method="gradcam")   # [B, H, W] in [0, 1]
    full = to_original(maps[0], image_size=224, stored_size=256, affine=..., orig_size=(w, h))

Methods (the :data:`METHODS` registry): ``cam`` (CAM from the prediction weights: GAP head, or the
ChestX-ray8 transition layer), ``gradcam``, ``gradcam++``, ``scorecam``, ``smoothgrad``
(tf-keras-vis), ``ig`` (Integrated Gradients), ``lime`` (the ``lime`` package), and the layered
methods of :mod:`cxr_tf.explain.layered` (``layered.toml``): LayerCAM, Grad-CAM and Grad-CAM++ at
earlier stages or fused over the last three, from the target's logit. ``DEFAULT_METHOD`` is the
one that localized best (``benchmarks/localization.py``). CAM-family methods use the preset's
layers (:func:`cxr_tf.models.cam_layer`, ``stage_layers`` in ``presets.toml``), never
tf-keras-vis' automatic choice. Localization is scored with ChestX-ray8's protocol
(:mod:`cxr_tf.explain.localize`) and CheXlocalize's (:mod:`cxr_tf.explain.chexlocalize`).
Submodules load on first use, so reading the registry's names stays light.
"""

import importlib

_EXPORTS = {
    "METHODS": "methods", "heatmaps": "methods", "empty_maps": "methods", "DEFAULT_METHOD": "registry",
    "stage_layers": "layered", "Localization": "localize", "localize_run": "localize",
    "box_to_input": "coords", "input_to_original": "coords", "to_original": "coords",
    "boxes_from_heatmap": "boxes", "HEAT_THRESHOLDS": "boxes",
    "CamImages": "tensorboard", "cam_images_for": "tensorboard",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cxr_tf.explain.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cxr_tf.explain' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
