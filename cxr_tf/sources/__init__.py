"""Sources: one module per on-disk layout, each turning it into a manifest (no TensorFlow here).

Every source module exposes ``load(data_dir, split=..., seed=..., **options) -> SourceData``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SOURCES = ("chestxray14",)
BOX_COLUMNS = ("image_id", "finding", "x", "y", "w", "h")


@dataclass
class SourceData:
    """What a source found on disk.

    ``manifest`` has one row per image listed by the dataset's label file, with ``path`` relative
    to ``root``; ``missing`` lists the image ids whose file is not on disk (their rows are still in
    the manifest so that splits do not depend on what was unpacked). ``boxes`` (may be empty) has
    :data:`BOX_COLUMNS`, coordinates in a ``bbox_frame``-pixel square frame.
    """

    name: str
    root: Path
    findings: tuple[str, ...]
    manifest: pd.DataFrame
    boxes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BOX_COLUMNS))
    missing: list[str] = field(default_factory=list)
    bbox_frame: float | None = None
    files: dict[str, str] = field(default_factory=dict)


def get(name: str):
    """The source module for a dataset name, e.g. ``get("chestxray14").load(data_dir)``."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(SOURCES)}")
    return importlib.import_module(f"cxr_tf.sources.{name}")
