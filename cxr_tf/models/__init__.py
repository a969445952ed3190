"""Keras 3 models that stand alone: ``keras.applications`` backbones with our heads, built as one
flat functional graph (so Grad-CAM can reach any layer) whose first layers cast and normalize raw
grayscale pixels, presets as data (``cxr_tf/presets.toml``), and save/load that keeps the finding
names, the normalization, the input size and the operating thresholds inside the ``.keras`` file.

    model = build_model("chexnet", weights="imagenet")
    model = load_model("runs/x/model.keras")
    findings_of(model), thresholds_of(model), input_size_of(model)
    probs = model.predict(image_input("scan.dcm", model).pixels[None])
"""

from cxr_tf.models.build import (INPUT_LAYERS, WeightsUnavailable, backbone_of, build_model,  # noqa: F401
                                 cam_layer, contract_model, findings_of, input_size_of, load_checkpoint,
                                 load_model, normalization_of, preprocessing_of, save_model, set_thresholds,
                                 thresholds_of, training_model)
from cxr_tf.models.ensemble import EnsembleMean, ensemble  # noqa: F401
from cxr_tf.models.inputs import collect_images, image_input, iter_batches, stack  # noqa: F401
