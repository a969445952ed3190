"""Build, save and load cxr_tf models."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras

from cxr_tf.errors import CxrError
from cxr_tf.findings import vocabulary
from cxr_tf.models.layers import FindingsDense, LSEPooling

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

log = logging.getLogger(__name__)
with open(Path(__file__).with_name("presets.toml"), "rb") as _fh:
    _DATA = tomllib.load(_fh)
BACKBONES: dict = _DATA["backbones"]
PRESETS: dict = _DATA["presets"]
WEIGHTS_HELP = ("pass --weights PATH to a local Keras '{file}' (no-top ImageNet weights), or "
                "--weights none to train from scratch")


class WeightsUnavailable(CxrError):
    """ImageNet weights could not be downloaded or read."""


def preset(name: str) -> dict:
    """A preset's settings (a copy)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


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
    spec = BACKBONES[name]
    if spec["application"] == "tiny":
        if weights not in (None, "none"):
            raise ValueError("the tiny backbone has no pretrained weights; use weights=None")
        return _tiny_backbone(inputs)
    app = getattr(keras.applications, spec["application"])
    if weights == "none":
        weights = None
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise WeightsUnavailable(f"{weights}: weights file not found; "
                                 + WEIGHTS_HELP.format(file=spec["weights_file"]))
    try:
        base = app(include_top=False, weights=weights, input_tensor=inputs)
    except Exception as exc:  # keras' download raises a bare Exception on URL failures
        if weights == "imagenet":
            raise WeightsUnavailable(
                f"could not download ImageNet weights for {name} ({type(exc).__name__}: "
                f"{str(exc)[:200]}); " + WEIGHTS_HELP.format(file=spec["weights_file"])) from None
        raise WeightsUnavailable(f"{weights}: cannot load as {name} weights: {exc}") from None
    return base.output


def build_model(preset_name: str | None = None, *, backbone: str | None = None,
                findings=None, weights="imagenet", image_size: int | None = None,
                head: str | None = None, lse_r: float | None = None,
                transition_depth: int | None = None, dropout: float = 0.0) -> keras.Model:
    """Build a flat functional model: backbone(include_top=False) on our input, then the head.

    ``head="gap"``: global average pooling + one sigmoid unit per finding (CheXNet).
    ``head="transition_lse"``: a 1x1 conv + BN + ReLU transition layer to ``transition_depth`` channels, LSE
    pooling with ``lse_r``, and the prediction layer (ChestX-ray8).
    ``weights``: ``"imagenet"`` (Keras download), a local no-top weights file, or ``None``.
    ``findings``: a list of names, or None for the preset's vocabulary.
    """
    cfg = preset(preset_name) if preset_name else {}
    backbone = backbone or cfg.get("backbone", "densenet121")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(BACKBONES)}")
    head = head or cfg.get("head", "gap")
    image_size = image_size or cfg.get("image_size", 224)
    if findings is None:
        findings = vocabulary(cfg.get("dataset", "chestxray14"), cfg.get("findings")).findings
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = _backbone(backbone, inputs, weights)
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
        raise ValueError(f"unknown head {head!r}; use 'gap' or 'transition_lse'")
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = FindingsDense(findings, name="predictions", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=f"cxr_{backbone}_{head}")
    model.cxr_backbone = backbone
    return model


def findings_of(model: keras.Model) -> list[str]:
    """The finding names of a cxr_tf model's outputs, in order."""
    try:
        return list(model.get_layer("predictions").findings)
    except (ValueError, AttributeError):
        raise CxrError(f"{model.name}: not a cxr_tf model (no 'predictions' FindingsDense layer)") from None


def backbone_of(model: keras.Model) -> str:
    """The backbone name of a cxr_tf model (from its name ``cxr_<backbone>_<head>``)."""
    for name in BACKBONES:
        if model.name.startswith(f"cxr_{name}_"):
            return name
    raise CxrError(f"{model.name}: cannot tell the backbone of this model")


def cam_layer(model_or_backbone) -> str:
    """The default CAM target layer: the last activation of the last conv block (or, with the
    ChestX-ray8 head, the transition layer's activation)."""
    if isinstance(model_or_backbone, keras.Model):
        names = {layer.name for layer in model_or_backbone.layers}
        if "transition_relu" in names:
            return "transition_relu"
        model_or_backbone = backbone_of(model_or_backbone)
    return BACKBONES[model_or_backbone]["cam_layer"]


def normalization_of(model_or_backbone) -> str:
    """The input normalization a backbone's weights expect (see :func:`cxr_tf.pipeline.normalize`)."""
    name = model_or_backbone if isinstance(model_or_backbone, str) else backbone_of(model_or_backbone)
    return BACKBONES[name]["normalization"]


def load_model(path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` model saved by cxr_tf; the finding names come with it."""
    import cxr_tf.losses  # noqa: F401  (registers the losses for compiled models)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CxrError(f"{path}: model file not found")
    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as exc:
        raise CxrError(f"{path}: cannot load model: {exc}") from None
