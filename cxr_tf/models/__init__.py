"""Keras 3 models that stand alone: ``keras.applications`` backbones with our heads, built as one
flat functional graph (so Grad-CAM can reach any layer) whose first layers cast and normalize raw
grayscale pixels, presets as data (``cxr_tf/models/presets.toml``), and save/load that keeps the finding
names, the normalization, the input size and the operating thresholds inside the ``.keras`` file.

    model = build_model("chexnet", weights="imagenet")
    model = load_model("runs/x/model.keras")
    findings_of(model), thresholds_of(model), input_size_of(model)
    probs = model.predict(image_input("scan.dcm", model).pixels[None])
"""

import importlib

# Names offered here and the module each lives in. They are imported on first use, so that
# ``cxr_tf.models.presets`` (data, read by the settings) does not load Keras.
_EXPORTS = {
    **dict.fromkeys(["INPUT_LAYERS", "WeightsUnavailable", "backbone_of", "build_model", "cam_layer", "contract_model",
                     "findings_of", "fuse_batch_norm", "input_size_of", "load_checkpoint", "load_model",
                     "normalization_of", "preprocessing_of", "save_model", "set_thresholds", "thresholds_of",
                     "training_model"], "build"),
    **dict.fromkeys(["EnsembleMean", "ensemble"], "ensemble"),
    **dict.fromkeys(["collect_images", "image_input", "iter_batches", "stack"], "inputs"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import an offered name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cxr_tf.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cxr_tf.models.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
