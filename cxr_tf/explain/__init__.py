"""Heatmaps for cxr_tf models, in model-input or original-image coordinates.

    from cxr_tf.explain import heatmaps, to_original
    maps = heatmaps(model, images, targets=[1, 2], method="gradcam")    # [B, H, W] in [0, 1]
    full = to_original(maps[0], image_size=224, stored_size=256, affine=..., orig_size=(w, h))

Methods: ``cam`` (CAM from the prediction weights: GAP head, or the ChestX-ray8 transition layer),
``gradcam``, ``gradcam++``, ``scorecam``, ``smoothgrad`` (tf-keras-vis), ``ig`` (Integrated
Gradients) and ``lime`` (the ``lime`` package). CAM-family methods use the preset's layer
(:func:`cxr_tf.models.cam_layer`), never tf-keras-vis' automatic choice.
"""

from cxr_tf.explain.coords import box_to_input, input_to_original, to_original  # noqa: F401
from cxr_tf.explain.methods import METHODS, heatmaps  # noqa: F401
