"""Keras 3 models: ``keras.applications`` backbones with our heads, built as one flat functional
graph (so Grad-CAM can reach any layer), presets as data (``presets.toml``), and save/load that
keeps the finding names.

    model = build_model("chexnet", weights="imagenet")
    model = load_model("runs/x/model.keras"); findings_of(model)
"""

from cxr_tf.models.build import (BACKBONES, PRESETS, build_model, cam_layer, findings_of,  # noqa: F401
                                 load_model, normalization_of, preset)
