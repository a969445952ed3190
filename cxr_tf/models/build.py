"""Build, save and load cxr_tf models, and read what a loaded model carries.

A model is one flat functional graph: ``image`` [B, H, W, 1] grayscale pixels on 0..255 ->
``pixels`` (cast) -> ``to_rgb`` -> ``normalize`` (the backbone's normalization) -> the
``keras.applications`` backbone's layers (joined into our graph, so Grad-CAM reaches any of them)
-> the head -> ``predictions`` (one sigmoid per finding, carrying names and thresholds).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras

from cxr_tf.core import atomic
from cxr_tf.models import presets
from cxr_tf.core.errors import CxrConfigError, CxrDataError, CxrError
from cxr_tf.vocab.findings import vocabulary
from cxr_tf.models.layers import (FindingsDense, FindingsLogits, FusedBatchNormalization, GrayToRGB, LSEPooling,
                                  MulticlassProbability, Normalize, Pixels)

log = logging.getLogger(__name__)
WEIGHTS_HELP = "a local Keras '{file}' (no-top ImageNet weights) or none (train from scratch)"
INPUT_LAYERS = ("pixels", "to_rgb", "normalize")


class WeightsUnavailable(CxrConfigError):
    """ImageNet weights could not be downloaded or read."""

    def __init__(self, problem: str, file: str):
        super().__init__(problem, key="weights", fix=WEIGHTS_HELP.format(file=file))


def _tiny_backbone(inputs):
    """A 4-block CNN (about 25k weights) for tests; its last activation is ``tiny_relu``."""
    x = inputs
    for i, filters in enumerate((16, 32, 48, 64)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"tiny_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"tiny_bn{i}")(x)
        x = keras.layers.ReLU(name="tiny_relu" if i == 3 else f"tiny_relu{i}")(x)
    return x


def _backbone(name: str, inputs, weights):
    """The backbone's last feature map, built on ``inputs`` (flat: its layers join our graph)."""
    spec = presets.backbone(name)
    weights = None if weights in (None, "none", "None", "") else weights
    if spec["application"] == "tiny":
        if weights is not None:
            raise CxrConfigError(f"the {name} backbone has no pretrained weights", key="weights", fix="none")
        return _tiny_backbone(inputs)
    app = getattr(keras.applications, spec["application"])
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise WeightsUnavailable(f"{weights}: weights file not found", spec["weights_file"])
    try:
        base = app(include_top=False, weights=weights, input_tensor=inputs)
    except Exception as exc:  # keras' download raises a bare Exception on URL failures
        if weights == "imagenet":
            raise WeightsUnavailable(f"could not download ImageNet weights for {name} ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})", spec["weights_file"]) from None
        raise WeightsUnavailable(f"{weights}: cannot load as {name} weights: {exc}", spec["weights_file"]) from None
    return base.output


def build_model(preset_name: str | None = None, *, backbone: str | None = None, findings=None,
                weights="imagenet", image_size: int | None = None, head: str | None = None,
                lse_r: float | None = None, transition_depth: int | None = None, dropout: float = 0.0,
                normalization: str | None = None, stored_size: int | None = None,
                aspect: str = "pad", dataset: str | None = None, multiclass=()) -> keras.Model:
    """Build a flat functional model (see the module doc); arguments left None come from the
    preset (``presets.toml``; default ``presets.DEFAULT``).

    ``head="gap"``: global average pooling + one sigmoid unit per finding (CheXNet).
    ``head="transition_lse"``: a 1x1 conv + BN + ReLU transition layer to ``transition_depth``
    channels, LSE pooling with ``lse_r``, and the prediction layer (ChestX-ray8).
    ``weights``: ``"imagenet"`` (Keras download), a local no-top weights file, or None/"none".
    ``findings``: a list of names, the name of a list in the dataset card, or None for the preset's.
    ``normalization``: a ``presets.toml`` normalization (default: the backbone's).
    ``stored_size``/``aspect``: how the training images were made square (recorded in the model).
    ``multiclass``: findings trained with U-MultiClass; with any, the head is three logits per
    finding (``predictions_logits``, what :func:`training_model` trains) and ``predictions`` turns
    them into one probability per finding, so the model's output is the same as any other's.
    """
    cfg = presets.preset(preset_name or presets.DEFAULT)
    backbone = backbone or cfg.get("backbone", "densenet121")
    spec = presets.backbone(backbone)
    head = head or cfg.get("head", "gap")
    image_size = int(image_size or cfg.get("image_size", 224))
    if findings is None or isinstance(findings, str):
        findings = vocabulary(dataset or cfg["dataset"],
                              findings if isinstance(findings, str) else cfg.get("findings")).findings
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = Pixels(stored_size, aspect, name="pixels")(inputs)
    x = GrayToRGB(name="to_rgb")(x)
    x = Normalize(normalization or spec["normalization"], name="normalize")(x)
    features = _backbone(backbone, x, weights)
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    elif head == "transition_lse":
        depth = transition_depth or cfg.get("transition_depth", 2048)
        # conv -> BN -> ReLU like the backbones' own layers: BN puts the transition activations on
        # a unit scale, so LSE's r means the same whatever the backbone's activation scale (with
        # from-scratch ResNet50 features, the BN-free version saturated and did not learn).
        t = keras.layers.Conv2D(depth, 1, padding="same", use_bias=False, name="transition")(features)
        t = keras.layers.BatchNormalization(epsilon=1.001e-5, name="transition_bn")(t)
        t = keras.layers.ReLU(name="transition_relu")(t)
        x = LSEPooling(lse_r or cfg.get("lse_r", 10.0), name="lse_pool")(t)
    else:
        raise CxrConfigError(f"unknown head {head!r}", key="head", choices=presets.names("heads"))
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if multiclass:
        unknown = sorted(set(multiclass) - set(findings))
        if unknown:
            raise CxrConfigError(f"multiclass findings {unknown} are not among the outputs", key="uncertain")
        logits = FindingsLogits(findings, multiclass, name="predictions_logits", dtype="float32")(x)
        outputs = MulticlassProbability(findings, multiclass, name="predictions", dtype="float32")(logits)
    else:
        outputs = FindingsDense(findings, name="predictions", dtype="float32")(x)
    return fuse_batch_norm(keras.Model(inputs, outputs, name=f"cxr_{backbone}_{head}"))


def fuse_batch_norm(model: keras.Model) -> keras.Model:
    """Make every plain ``keras.layers.BatchNormalization`` of ``model`` (nested models included) a
    :class:`~cxr_tf.models.layers.FusedBatchNormalization`, in place, and return the model.

    The subclass adds no state and only replaces the training computation, so the layer keeps its
    weights, config and place in the graph (``keras.applications`` builds its own BN layers, and
    models saved before the fused layer existed load as plain BN)."""
    for layer in model._flatten_layers(include_self=False):
        if type(layer) is keras.layers.BatchNormalization:
            layer.__class__ = FusedBatchNormalization
    return model


def training_model(model: keras.Model) -> keras.Model:
    """What ``fit`` trains: the model itself, or, with U-MultiClass findings, the same layers up to
    the three logits per finding (the loss needs them; the shared layers keep both in step)."""
    names = {layer.name for layer in model.layers}
    if "predictions_logits" not in names or model.output is model.get_layer("predictions_logits").output:
        return model
    return keras.Model(model.inputs, model.get_layer("predictions_logits").output, name=model.name)


def contract_model(model: keras.Model) -> keras.Model:
    """The one-probability-per-finding model (what ``model.keras`` holds) of a model or of its
    :func:`training_model`, sharing its layers."""
    try:
        logits = model.get_layer("predictions_logits")
    except ValueError:
        return model
    if model.output is not logits.output:
        return model
    probs = MulticlassProbability(logits.findings, logits.multiclass, name="predictions", dtype="float32")(model.output)
    return keras.Model(model.inputs, probs, name=model.name)


def load_checkpoint(path) -> keras.Model:
    """A training checkpoint (``checkpoints/*.keras``: the training model, compiled, optimizer
    state included); errors name the file."""
    import cxr_tf.models.losses  # noqa: F401
    import cxr_tf.models.optimizers  # noqa: F401
    try:
        model = keras.models.load_model(os.fspath(path), compile=True)
    except Exception as exc:
        raise CxrDataError(path, f"cannot load checkpoint: {type(exc).__name__}: {str(exc)[:300]}") from None
    return fuse_batch_norm(model)


def _layer(model: keras.Model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        raise CxrError(f"{model.name}: not a cxr_tf model (no {name!r} layer)") from None


def findings_of(model: keras.Model) -> list[str]:
    """The finding names of a cxr_tf model's outputs, in order."""
    return list(_layer(model, "predictions").findings)


def thresholds_of(model: keras.Model) -> dict[str, float] | None:
    """The per-finding operating thresholds stored in the model (None until evaluate chose them)."""
    layer = _layer(model, "predictions")
    return None if layer.thresholds is None else dict(zip(layer.findings, layer.thresholds))


def set_thresholds(model: keras.Model, thresholds: dict, rule: str | None = None) -> None:
    """Store per-finding thresholds (a value for every finding) in the model's prediction layer."""
    layer = _layer(model, "predictions")
    missing = [f for f in layer.findings if f not in thresholds]
    if missing:
        raise CxrConfigError(f"no threshold for {missing}", key="thresholds")
    layer.thresholds = [float(thresholds[f]) for f in layer.findings]
    layer.thresholds_rule = rule


def input_size_of(model: keras.Model) -> int:
    """The side of the square input the model takes."""
    return int(model.input_shape[1])


def preprocessing_of(model: keras.Model) -> dict:
    """How an image becomes this model's input: the stored size and aspect handling used for the
    training records, the input size, and the normalization the model applies itself."""
    pixels = _layer(model, "pixels")
    size = input_size_of(model)
    return {"input_size": size, "stored_size": pixels.stored_size or size, "aspect": pixels.aspect,
            "normalization": normalization_of(model)}


def backbone_of(model: keras.Model) -> str:
    """The backbone name of a cxr_tf model (from its name ``cxr_<backbone>_<head>``)."""
    for name in presets.names("backbones"):
        if model.name.startswith(f"cxr_{name}_"):
            return name
    raise CxrError(f"{model.name}: cannot tell the backbone of this model")


def cam_layer(model_or_backbone) -> str:
    """The default CAM target layer: the last activation of the last conv block (or, with the
    ChestX-ray8 head, the transition layer's activation)."""
    if isinstance(model_or_backbone, keras.Model):
        members = getattr(_layer(model_or_backbone, "predictions"), "cam_layers", None)
        if members:   # an ensemble: its first member's
            return members[0]
        if any(layer.name == "transition_relu" for layer in model_or_backbone.layers):
            return "transition_relu"
        model_or_backbone = backbone_of(model_or_backbone)
    return presets.backbone(model_or_backbone)["cam_layer"]


def normalization_of(model_or_backbone) -> str:
    """The input normalization of a model (applied inside it; an ensemble's members may each have
    their own: ``"m0: imagenet, m1: caffe"``) or that a backbone's weights expect."""
    if isinstance(model_or_backbone, str):
        return presets.normalization_name(presets.backbone(model_or_backbone)["normalization"])
    layers = [layer for layer in model_or_backbone.layers if isinstance(layer, Normalize)]
    if not layers:
        raise CxrError(f"{model_or_backbone.name}: not a cxr_tf model (no normalization layer)")
    names = {layer.name.removesuffix("normalize").rstrip("_") or "": layer.normalization for layer in layers}
    if len(set(names.values())) == 1:
        return layers[0].normalization
    return ", ".join(f"{k}: {v}" for k, v in names.items())


def save_model(model: keras.Model, path) -> None:
    """Save atomically as ``.keras`` (a killed save never leaves a half-written model)."""
    with atomic.atomic_path(path, keep_suffix=True) as tmp:
        model.save(tmp)


def load_model(path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model saved by cxr_tf. It takes grayscale pixels on 0..255,
    [B, H, W, 1] at :func:`input_size_of`, and returns one probability per :func:`findings_of`."""
    import cxr_tf.models.losses  # noqa: F401  (registers the losses of compiled models)
    import cxr_tf.models.optimizers  # noqa: F401  (registers FusedAdam)

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CxrDataError(path, "model file not found")
    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as exc:
        raise CxrDataError(path, f"cannot load model: {type(exc).__name__}: {str(exc)[:300]}") from None
    for name in ("pixels", "predictions"):
        _layer(model, name)
    return fuse_batch_norm(model)
