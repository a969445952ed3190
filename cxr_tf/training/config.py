"""One config vocabulary: :class:`TrainConfig`'s field names are the keys of the presets
(``presets.toml``), of the reproduction recipes (``[train]`` in ``reproductions/*.toml``), of config
files (``cxr-tf train --config FILE.toml``), of ``--set key=value`` and of the command's named
options. Unknown keys are refused with the closest valid one; no key is silently dropped.

Resolution happens in one place, :meth:`TrainConfig.resolved`: built-in defaults, beneath the
preset's values, beneath what the caller gave (the recipe, the config file, the command line, in
that order of precedence for whoever merges them). A field counts as given when it was passed to
the constructor, so ``TrainConfig(preset="tiny")`` gets the tiny preset's ``weights = "none"``
while ``TrainConfig(preset="tiny", weights="imagenet")`` is refused with a clear message.

No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from cxr_tf.models import presets
from cxr_tf.core.settings import parse_value, read_toml
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.records.reader import RecordsDir
from cxr_tf.vocab.findings import check_policies, parse_policies, vocabulary

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
LR_SCHEDULES = ("plateau", "constant")
SELECT_BY = ("val_loss", "val_auroc_mean", "val_auroc_tasks")
# What a resumed run may change; anything else given on resume must equal the saved value.
RESUME_OVERRIDES = ("records", "epochs", "verbose", "strategy", "tb_cam_images", "data_service")
# Names other tools (and older cxr-tf recipes) use, suggested when they are given; never accepted.
_OTHER_NAMES = {"learning_rate": "lr", "model": "backbone", "input_size": "image_size", "size": "image_size",
                "epoch": "epochs", "batch": "batch_size", "uncertainty": "uncertain", "pretrained": "weights",
                "augment": "hflip", "optimizer": "lr"}


@dataclass(init=False)
class TrainConfig:
    """Everything a training run depends on. Build it with keywords (or :meth:`from_mapping`);
    :meth:`resolved` fills what was not given from the preset and the backbone."""

    records: str | None = None        # records directory from `cxr-tf prepare`
    out: str | None = None            # run directory (None: train in memory, write nothing)
    preset: str = presets.DEFAULT     # presets.toml: defaults for the fields below
    dataset: str | None = None        # the dataset card whose vocabulary names the findings
    findings: list | str | None = None   # output names, a list name in the card, or "records" (the records' own)
    backbone: str | None = None
    head: str | None = None
    transition_depth: int | None = None
    lse_r: float | None = None
    dropout: float = 0.0
    weights: str | None = "imagenet"  # imagenet, a local no-top weights file, or none
    image_size: int | None = None
    normalization: str | None = None  # default: the backbone's
    loss: str = "bce"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    epochs: int = 10
    batch_size: int = 16              # global, over all replicas
    lr: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    lr_schedule: str = "plateau"      # plateau: divide by 1/plateau_factor on a val_loss plateau; constant
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    min_lr: float = 1e-7
    checkpoint_every: int | None = None   # steps between validation + checkpoint (None: every epoch)
    keep_checkpoints: int = 1         # the best checkpoints kept by select_by (for `cxr-tf ensemble`)
    select_by: str = "val_loss"       # val_loss (lowest), val_auroc_mean or val_auroc_tasks (highest)
    select_findings: list | str | None = None   # tasks of val_auroc_tasks, or a list name in the card
    bn_momentum: float | None = 0.9   # PyTorch BN momentum 0.1, as CheXNet trained; None keeps Keras 0.99
    hflip: bool = True
    crop_scale: list | None = None    # [min, max] area fraction of a random square crop
    rotation: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    uncertain: str | dict = "ignore"  # findings.UNCERTAIN_POLICIES, or {finding: policy, "default": ...}
    blank: str = "zeros"              # findings.BLANK_POLICIES
    mixed_precision: bool = False
    jit_compile: bool = False
    fast_start: bool = True
    strategy: str = "auto"
    data_service: str | None = None   # a tf.data service dispatcher (host:port) that decodes the training images
    seed: int = 0
    deterministic: bool = False
    steps_per_epoch: int | None = None
    shuffle_buffer: int = 2048
    verbose: int = 2
    tb_cam_images: int = 4            # validation images with Grad-CAM overlays in TensorBoard

    def __init__(self, **values: Any):
        _check_keys(values, "TrainConfig")
        for f in fields(self):
            setattr(self, f.name, values.get(f.name, f.default))
        self._given = frozenset(values)

    @property
    def given(self) -> frozenset:
        """The fields the caller set (the others are defaults, or the preset's once resolved)."""
        return self._given

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str | None = None) -> "TrainConfig":
        """A config from a mapping of field names (a recipe, a TOML file, ``--set`` pairs);
        unknown keys are refused, naming ``where`` and the closest valid key."""
        _check_keys(mapping, where)
        return cls(**dict(mapping))

    def given_values(self) -> dict:
        """The given fields and their values."""
        return {k: getattr(self, k) for k in self._given}

    def resolved(self) -> "TrainConfig":
        """A validated copy with the preset's values beneath the given ones, the findings as a
        list, the normalization and weights spelled canonically."""
        given = self.given_values()
        preset_values = presets.preset(given.get("preset", self.preset))
        _check_keys(preset_values, f"{presets.PATH} [presets.{given.get('preset', self.preset)}]")
        cfg = TrainConfig(**{**preset_values, **given})
        cfg._given = self._given
        _check_types(cfg)
        entry = presets.backbone(cfg.backbone or "densenet121")
        cfg.backbone = cfg.backbone or "densenet121"
        cfg.head = cfg.head or "gap"
        if cfg.head not in presets.names("heads"):
            raise CxrConfigError(f"unknown head {cfg.head!r}", key="head", choices=presets.names("heads"))
        cfg.image_size = int(cfg.image_size or 224)
        cfg.normalization = presets.normalization_name(cfg.normalization or entry["normalization"])
        if not cfg.dataset:
            raise CxrConfigError(f"preset {cfg.preset!r} names no dataset, so no vocabulary for the findings",
                                 key="dataset")
        if cfg.findings == "records":          # the records' own label set (e.g. `cxr-tf merge`)
            if not cfg.records:
                raise CxrConfigError("findings = 'records' needs the records directory", key="findings")
            cfg.findings = list(RecordsDir(cfg.records).findings)
        if cfg.findings is None or isinstance(cfg.findings, str):
            cfg.findings = list(vocabulary(cfg.dataset, cfg.findings).findings)
        cfg.findings = [str(f) for f in cfg.findings]
        cfg.weights = "none" if cfg.weights in (None, "", "none", "None") else str(cfg.weights)
        if cfg.loss not in presets.names("losses"):
            raise CxrConfigError(f"unknown loss {cfg.loss!r}", key="loss", choices=presets.names("losses"))
        if isinstance(cfg.uncertain, str):
            cfg.uncertain = parse_policies(cfg.uncertain)
        check_policies(cfg.uncertain, cfg.blank, cfg.findings)
        for key, allowed in (("strategy", STRATEGIES), ("lr_schedule", LR_SCHEDULES), ("select_by", SELECT_BY)):
            if getattr(cfg, key) not in allowed:
                raise CxrConfigError(f"unknown value {getattr(cfg, key)!r}", key=key, choices=allowed)
        if cfg.select_by == "val_auroc_tasks":
            if isinstance(cfg.select_findings, str):
                cfg.select_findings = list(vocabulary(cfg.dataset, cfg.select_findings).findings)
            missing = sorted(set(cfg.select_findings or ()) - set(cfg.findings))
            if not cfg.select_findings or missing:
                raise CxrConfigError(f"val_auroc_tasks needs select_findings among the findings (missing: {missing})",
                                     key="select_findings")
        _check_ranges(cfg, entry)
        cfg._resolved = True
        return cfg

    def is_resolved(self) -> bool:
        """Whether this config came from :meth:`resolved` (a session never resolves one twice, so
        a value set on a resolved config stays)."""
        return getattr(self, "_resolved", False)

    def to_dict(self) -> dict:
        """All fields, JSON-ready (what ``config.json`` holds)."""
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in fields(TrainConfig))


def _check_keys(mapping: Mapping, where: str | None) -> None:
    """Refuse keys that are not TrainConfig fields, suggesting the closest one."""
    for key in mapping:
        if key not in FIELDS:
            close = [_OTHER_NAMES[key]] if key in _OTHER_NAMES else \
                difflib.get_close_matches(str(key), FIELDS, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(FIELDS)}"
            raise CxrConfigError(f"{where + ': ' if where else ''}unknown setting {key!r}{hint}")


def _check_types(cfg: TrainConfig) -> None:
    """Each value must have its field's type (ints are accepted for floats)."""
    hints = typing.get_type_hints(TrainConfig)
    for name in FIELDS:
        value, hint = getattr(cfg, name), hints[name]
        allowed = typing.get_args(hint) or (hint,)
        if value is None and type(None) in allowed:
            continue
        if isinstance(value, os.PathLike) and str in allowed:
            value = os.fspath(value)
            setattr(cfg, name, value)
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in allowed \
                and str not in allowed:
            setattr(cfg, name, None)
            continue
        ok = any(_is(value, t) for t in allowed)
        if not ok:
            names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
            raise CxrConfigError(f"expected {names}, got {value!r}", key=name)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            setattr(cfg, name, float(value))


def _is(value, t) -> bool:
    if t is type(None):
        return value is None
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(t) or t
    return isinstance(value, origin)


def _check_ranges(cfg: TrainConfig, backbone: dict) -> None:
    """Values a run cannot start with, refused before anything is built or written."""
    if not backbone.get("pretrained", True) and cfg.weights != "none":
        raise CxrConfigError(f"the {cfg.backbone} backbone has no pretrained weights", key="weights", fix="none")
    if cfg.image_size < backbone.get("min_size", 8):
        raise CxrConfigError(f"{cfg.backbone} needs at least {backbone.get('min_size', 8)} px, got "
                             f"{cfg.image_size}", key="image_size")
    positive = {"epochs": 1, "batch_size": 1, "plateau_patience": 0, "shuffle_buffer": 0, "tb_cam_images": 0,
                "keep_checkpoints": 1, "checkpoint_every": 1}
    for name, low in positive.items():
        if getattr(cfg, name) is not None and getattr(cfg, name) < low:
            raise CxrConfigError(f"must be at least {low}, got {getattr(cfg, name)}", key=name)
    for name in ("lr", "min_lr"):
        if not getattr(cfg, name) > 0:
            raise CxrConfigError(f"must be positive, got {getattr(cfg, name)}", key=name)
    if not 0.0 <= cfg.dropout < 1.0:
        raise CxrConfigError(f"must be in [0, 1), got {cfg.dropout}", key="dropout")
    if cfg.crop_scale is not None:
        lo_hi = list(cfg.crop_scale)
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] <= 1:
            raise CxrConfigError(f"must be [min, max] with 0 < min <= max <= 1, got {cfg.crop_scale}",
                                 key="crop_scale")
        cfg.crop_scale = [float(v) for v in lo_hi]
    if not cfg.findings:
        raise CxrConfigError("no findings to train on", key="findings")


def load_file(path) -> dict:
    """The settings in a TOML config file: its top-level keys, or its ``[train]`` table when it
    has one (a reproduction recipe, or ``best.toml`` from ``cxr-tf tune``)."""
    path = Path(path)
    data = read_toml(path, "config file")
    data = data.get("train", data)
    _check_keys(data, str(path))
    return data


def parse_set(pairs) -> dict:
    """``["lr=1e-4", "crop_scale=[0.8, 1.0]", "weights=none"]`` -> a dict of TrainConfig fields."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise CxrConfigError(f"expected KEY=VALUE, got {pair!r}", key="set")
        out[key.strip()] = parse_value(raw)
    _check_keys(out, "--set")
    return out


def for_resume(saved: Mapping[str, Any], given: Mapping[str, Any]) -> TrainConfig:
    """The config of a resumed run: the saved one, with only :data:`RESUME_OVERRIDES` taken from
    what the user gave; any other given value must equal the saved one."""
    values = {k: v for k, v in saved.items() if k in FIELDS}
    for key, value in given.items():
        if key in RESUME_OVERRIDES:
            values[key] = value
        elif key in values and _norm(values[key]) != _norm(value) and key != "out":
            raise CxrConfigError(f"cannot change {key} when resuming (the run was started with "
                                 f"{values[key]!r}, given {value!r}); start a new run instead", key=key)
    cfg = TrainConfig(**values)
    return cfg.resolved()


def _norm(value):
    return "none" if value in (None, "none", "None") else value
