"""The model vocabulary as data (``presets.toml``): backbones, heads, input normalizations,
losses and named presets, readable without importing Keras (the CLI's choice lists come from
here, so ``cxr-tf --help`` stays instant)."""

from __future__ import annotations

import functools
from pathlib import Path

from cxr_tf.core.settings import read_toml
from cxr_tf.core.errors import CxrConfigError

PATH = Path(__file__).with_name("presets.toml")
DEFAULT = "chexnet"     # the preset when none is named (TrainConfig.preset, build_model)


@functools.lru_cache(maxsize=None)
def data() -> dict:
    """The whole ``presets.toml``."""
    return read_toml(PATH, "presets file")


def names(table: str) -> tuple[str, ...]:
    """Names in one table: ``backbones``, ``heads``, ``normalizations``, ``losses`` or ``presets``."""
    return tuple(data()[table])


def _lookup(table: str, name: str, key: str) -> dict:
    entries = data()[table]
    if name not in entries:
        raise CxrConfigError(f"unknown {table[:-1]} {name!r}; available: {', '.join(entries)}", key=key)
    return dict(entries[name])


def preset(name: str) -> dict:
    """A preset's settings (a copy, without its description)."""
    out = _lookup("presets", name, "preset")
    out.pop("description", None)
    return out


def backbone(name: str) -> dict:
    """A backbone's entry (application, CAM layer, normalization, weights file)."""
    return _lookup("backbones", name, "backbone")


def normalization_name(name: str) -> str:
    """The canonical name of a normalization (old ``model:<app>`` spellings accepted)."""
    name = data()["normalization_aliases"].get(name, name)
    _lookup("normalizations", name, "normalization")
    return name


def normalization(name: str) -> tuple[list[float], list[float]]:
    """(scale, offset) per channel such that ``out_c = gray * scale_c + offset_c`` for gray
    pixels on 0..255."""
    spec = _lookup("normalizations", normalization_name(name), "normalization")
    scale = [1.0 / (spec["divisor"] * s) for s in spec["std"]]
    offset = [-m / s for m, s in zip(spec["mean"], spec["std"])]
    return scale, offset
