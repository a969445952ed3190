"""Sources: one module per on-disk layout, each turning it into a manifest (no TensorFlow here).

The registry is built from the dataset cards: a card in ``datasets/`` that names a ``source``
module is a dataset ``cxr-tf prepare`` can read, and one whose ``[synth]`` table names a
``writer`` can be synthesized (``cxr-tf synth``) and is covered by the source contract test.
Adding a dataset means a card, a source module and a phantom writer; nothing else is edited.

Every source module satisfies :class:`Source`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from cxr_tf import cards
from cxr_tf.errors import CxrConfigError
from cxr_tf.imaging.geometry import frame_to_pixels

BOX_COLUMNS = ("image_id", "finding", "x", "y", "w", "h")


@dataclass
class SourceData:
    """What a source found on disk.

    ``manifest`` has one row per image listed by the dataset's label file, with ``path`` relative
    to ``root``; ``missing`` lists the image ids whose file is not on disk (their rows are still in
    the manifest so that splits do not depend on what was unpacked). ``boxes`` (may be empty) has
    :data:`BOX_COLUMNS`, coordinates in a ``bbox_frame``-pixel square frame (or in each file's own
    pixels when ``bbox_frame`` is None). ``files`` names the files read; ``release_counts`` holds
    counts of the source files that the card's ``[expected]`` table can be checked against;
    ``excluded`` counts the listed images a filter the user chose left out (never a silent drop);
    ``decode`` holds options for decoding the files (e.g. a DICOM ``recipe``), and ``tables`` side
    tables that prepare writes beside the manifest as ``<name>.csv`` (e.g. MIMIC's ``reports``).
    """

    name: str
    root: Path
    findings: tuple[str, ...]
    manifest: pd.DataFrame
    boxes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BOX_COLUMNS))
    missing: list[str] = field(default_factory=list)
    bbox_frame: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    release_counts: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    decode: dict = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """What a source module offers: its dataset ``NAME``, the extra ``load`` options it accepts
    (``OPTIONS``: name -> help, passed as ``cxr-tf prepare --option NAME=VALUE``), and ``load``,
    which reads a data directory in the real layout into a validated, split manifest."""

    NAME: str
    OPTIONS: Mapping[str, str]

    def load(self, data_dir, split: str = "official", seed: int | None = None,
             **options) -> SourceData:
        """Read ``data_dir`` into a :class:`SourceData` (patient-disjoint ``split`` column)."""


def _cards() -> dict[str, dict]:
    return {name: cards.dataset_card(name) for name in cards.available("datasets")}


def names() -> tuple[str, ...]:
    """The datasets whose card names a source module, sorted."""
    return tuple(n for n, c in _cards().items() if c.get("source"))


def synth_names() -> tuple[str, ...]:
    """The datasets whose card names a phantom writer, sorted."""
    return tuple(n for n, c in _cards().items() if c.get("synth", {}).get("writer"))


def _unknown(name: str, known, key: str) -> CxrConfigError:
    return CxrConfigError(f"unknown dataset {name!r}; available: {', '.join(known) or 'none'}", key=key)


def get(name: str) -> Source:
    """The source module of a dataset, e.g. ``get("chestxray14").load(data_dir)``."""
    if name not in names():
        raise _unknown(name, names(), "dataset")
    module = importlib.import_module(cards.dataset_card(name)["source"])
    if not isinstance(module, Source) or module.NAME != name:
        raise TypeError(f"{module.__name__} does not satisfy the Source protocol for {name!r}")
    return module


def synth_writer(name: str) -> Callable:
    """The phantom writer of a dataset: ``write_dataset(out_dir, n_images=..., n_patients=...,
    size=..., seed=...)`` returns counts, and ``"data_dir"`` when the dataset's ``--data-dir`` is
    a folder inside ``out_dir`` (CheXpert's ``CheXpert-v1.0-small/``)."""
    if name not in synth_names():
        raise _unknown(name, synth_names(), "dataset")
    module, _, func = cards.dataset_card(name)["synth"]["writer"].partition(":")
    return getattr(importlib.import_module(module), func)


def begin(name: str, data_dir, seed: int | None):
    """What every ``load`` starts with: the data directory (a clear error if it is not one), the
    dataset card, its vocabulary and the split seed (the card's unless given)."""
    from cxr_tf.errors import CxrDataError
    from cxr_tf.findings import vocabulary

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CxrDataError(data_dir, "data directory not found")
    card = cards.dataset_card(name)
    return data_dir, card, vocabulary(name), card["splits"]["seed"] if seed is None else seed


def check_options(source: Source, options: Mapping) -> dict:
    """``options`` for ``source.load``, refusing the names it does not accept."""
    unknown = sorted(set(options) - set(source.OPTIONS))
    if unknown:
        accepted = ", ".join(source.OPTIONS) or "none"
        raise CxrConfigError(f"{source.NAME} has no option(s) {unknown}; it accepts: {accepted}",
                             key="option")
    return dict(options)


def boxes_in_pixels(boxes: pd.DataFrame, sizes: Mapping[str, tuple[int, int]],
                    frame: float | None) -> pd.DataFrame:
    """The boxes of the images in ``sizes`` (image_id -> (width, height) of the file on disk),
    moved from the ``frame``-pixel box frame into each file's own pixels (None: already there),
    with ``orig_width`` and ``orig_height`` columns."""
    out = boxes[boxes["image_id"].isin(sizes.keys())].reset_index(drop=True)
    wh = np.array([sizes[i] for i in out["image_id"]], dtype=np.float64).reshape(-1, 2)
    xywh = out[["x", "y", "w", "h"]].to_numpy(np.float64)
    if frame:
        xywh = frame_to_pixels(xywh, wh[:, 0], wh[:, 1], frame)
    out[["x", "y", "w", "h"]] = xywh
    return out.assign(orig_width=wh[:, 0].astype(int), orig_height=wh[:, 1].astype(int))
