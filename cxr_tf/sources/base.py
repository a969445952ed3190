"""The steps every dataset's source shares (no TensorFlow here): what a load returns
(:class:`SourceData`), the four label states as they are written, finding a release file (plain or
gzipped), the start of a load (:func:`begin`) and its end (:func:`finish`: files on disk, missing
images, a validated manifest), and boxes moved into each file's own pixels.

A dataset's ``source.py`` (``datasets/<name>/source.py``) does only what its layout needs between
:func:`begin` and :func:`finish`.
"""

from __future__ import annotations

import gzip
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrDataError
from cxr_tf.imaging.geometry import frame_to_pixels
from cxr_tf.sources import manifest, splits
from cxr_tf.vocab.findings import vocabulary

log = logging.getLogger(__name__)
BOX_COLUMNS = ("image_id", "finding", "x", "y", "w", "h")
# A mask: canonical run-length text (cxr_tf.imaging.masks) over the file's own width x height pixels.
MASK_COLUMNS = ("image_id", "finding", "rle", "width", "height")
# A label cell as the releases write it -> the manifest's state (blank: not mentioned).
STATES = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "-1.0": -1.0, "-1": -1.0, "": np.nan}
ALLOWED = "allowed: 1.0, 0.0, -1.0 or blank"


@dataclass
class SourceData:
    """What a source found on disk.

    ``manifest`` has one row per image listed by the dataset's label file, with ``path`` relative to
    ``root``; ``missing`` lists the image ids whose file is not on disk (their rows are still in the
    manifest so that splits do not depend on what was unpacked). ``boxes`` (may be empty) has
    :data:`BOX_COLUMNS`, coordinates in a ``bbox_frame``-pixel square frame (or in each file's own
    pixels when ``bbox_frame`` is None); ``masks`` (may be empty) has :data:`MASK_COLUMNS`, one row
    per mask (several per image allowed), run-length encoded in the file's own pixels. ``files``
    names the files read; ``release_counts`` holds counts of the source files that the card's
    ``[expected]`` table can be checked against; ``excluded`` counts the listed images a filter the
    user chose left out (never a silent drop); ``decode`` holds options for decoding the files (e.g.
    a DICOM ``recipe``), and ``tables`` side tables that prepare writes beside the manifest as
    ``<name>.csv`` (e.g. MIMIC's ``reports``).
    """

    name: str
    root: Path
    findings: tuple[str, ...]
    manifest: pd.DataFrame
    boxes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BOX_COLUMNS))
    missing: list[str] = field(default_factory=list)
    masks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MASK_COLUMNS))
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


def card(name: str) -> dict:
    """A dataset's card (``datasets/<name>/card.toml``)."""
    return cards.dataset_card(name)


def find_file(folder: Path, names) -> Path | None:
    """The first of ``names`` (one name or a list) present in ``folder``, plain or as ``name.gz``
    (the releases ship some files gzipped)."""
    for name in [names] if isinstance(names, str) else names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def open_text(path: Path):
    """Open a text file for csv reading, transparently gunzipping ``*.gz`` (a BOM is dropped)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def state(value: str, path, finding: str, line: int) -> float:
    """One label cell -> 1.0, 0.0, -1.0 or NaN; anything else is an error naming the file and line."""
    try:
        return STATES[value.strip()]
    except KeyError:
        raise CxrDataError(path, f"line {line}: {finding} is {value.strip()!r}; {ALLOWED}") from None


def states(cells: pd.Series, path, finding: str, first_line: int = 2) -> np.ndarray:
    """A column of label cells -> float32 states; a bad cell is an error naming the file and line."""
    cells = cells.str.strip()
    bad = ~cells.isin(STATES.keys())
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + first_line
        raise CxrDataError(path, f"line {line}: {finding} is {cells[bad].iloc[0]!r}; {ALLOWED}")
    return cells.map(STATES).to_numpy(np.float32)


def begin(name: str, data_dir, seed: int | None):
    """What every ``load`` starts with: the data directory (a clear error if it is not one), the
    dataset card, its vocabulary and the split seed (the card's unless given)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CxrDataError(data_dir, "data directory not found")
    card = cards.dataset_card(name)
    return data_dir, card, vocabulary(name), card["splits"]["seed"] if seed is None else seed


def random_split(frame: pd.DataFrame, split: str, seed: int, fractions, c: dict) -> pd.DataFrame:
    """A non-official split of a manifest (the card's random fractions unless given)."""
    return splits.make_split(frame, split, seed=seed, fractions=fractions or c["splits"]["random_fractions"])


def finish(name: str, root: Path, frame: pd.DataFrame, findings, where, present=None, **data) -> SourceData:
    """The end of every load: which listed images are on disk (``present``, a boolean array, when
    the source already knows), the validated manifest in the standard column order, and the
    :class:`SourceData` (``data``: its other fields)."""
    if present is None:
        present = np.array([(root / p).is_file() for p in frame["path"]], dtype=bool)
    missing = frame.loc[~np.asarray(present), "image_id"].tolist()
    frame = manifest.validate(manifest.order(frame, findings), findings, where=where)
    excluded = data.get("excluded") or {}
    log.info("%s: %d images listed, %d on disk, %d missing%s", root, len(frame), len(frame) - len(missing),
             len(missing), "".join(f"; {k}: {v} excluded" for k, v in excluded.items()))
    return SourceData(name, root, tuple(findings), frame, missing=missing, **data)


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
