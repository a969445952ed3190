"""Segmentation masks as run-length text, exactly (no TensorFlow here).

A mask is kept as the canonical run-length encoding of cxr-tf: space-separated ``start length``
pairs, ``start`` a 0-based pixel index in **column-major** order (down the first column, then the
next: the order SIIM-ACR and most Kaggle masks use), over an image of ``width`` x ``height``
pixels. An empty string is an empty mask. Datasets that write another flavour convert to and from
this one in their source (SIIM-ACR's relative offsets: :func:`from_relative`, :func:`to_relative`).

:func:`encode` and :func:`decode` are exact inverses, :func:`union` merges several masks of one
image, and :func:`box` gives the tight box of a mask in pixels.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from cxr_tf.core.errors import CxrDataError


def _pairs(rle: str, where=None) -> np.ndarray:
    """``"s l s l ..."`` -> an (n, 2) int64 array (a clear error on an odd or non-integer list)."""
    text = (rle or "").strip()
    if not text or text == "-1":
        return np.zeros((0, 2), np.int64)
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise CxrDataError(where, f"run-length mask is not a list of integers: {text[:40]!r}") from None
    if values.size % 2:
        raise CxrDataError(where, f"run-length mask has an odd number of values ({values.size})")
    return values.reshape(-1, 2)


def _text(pairs: np.ndarray) -> str:
    return " ".join(map(str, np.asarray(pairs, np.int64).ravel()))


def decode(rle: str, width: int, height: int, where=None) -> np.ndarray:
    """The (height, width) uint8 mask (1 inside) of a canonical run-length string; runs outside
    the image, overlapping or out of order are an error naming ``where``."""
    pairs = _pairs(rle, where)
    flat = np.zeros(width * height, np.uint8)
    if len(pairs):
        starts, lengths = pairs[:, 0], pairs[:, 1]
        ends = starts + lengths
        if (starts < 0).any() or (lengths <= 0).any() or ends.max() > flat.size:
            raise CxrDataError(where, f"run-length mask runs outside a {width}x{height} image")
        if (starts[1:] < ends[:-1]).any():
            raise CxrDataError(where, "run-length mask has overlapping or unordered runs")
        marks = np.zeros(flat.size + 1, np.int32)
        np.add.at(marks, starts, 1)
        np.add.at(marks, ends, -1)
        flat = (np.cumsum(marks[:-1]) > 0).astype(np.uint8)
    return flat.reshape(width, height).T


def encode(mask: np.ndarray) -> str:
    """The canonical run-length string of a (height, width) mask (non-zero is inside)."""
    flat = (np.asarray(mask).T.ravel() != 0).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flat, [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return _text(np.stack([starts, ends - starts], axis=1))


def from_relative(rle: str, where=None) -> str:
    """SIIM-ACR's relative encoding (each start counted from the end of the previous run) ->
    the canonical absolute one. ``-1`` (no mask) -> ``""``."""
    pairs = _pairs(rle, where)
    if not len(pairs):
        return ""
    ends_before = np.concatenate([[0], np.cumsum(pairs[:, 0] + pairs[:, 1])[:-1]])
    return _text(np.stack([ends_before + pairs[:, 0], pairs[:, 1]], axis=1))


def to_relative(rle: str, where=None) -> str:
    """The canonical encoding -> SIIM-ACR's relative one (``-1`` for an empty mask)."""
    pairs = _pairs(rle, where)
    if not len(pairs):
        return "-1"
    previous_end = np.concatenate([[0], pairs[:-1, 0] + pairs[:-1, 1]])
    return _text(np.stack([pairs[:, 0] - previous_end, pairs[:, 1]], axis=1))


def union(rles: Iterable[str], width: int, height: int, where=None) -> str:
    """One canonical string for the union of several masks of one image."""
    out = np.zeros((height, width), np.uint8)
    for rle in rles:
        out |= decode(rle, width, height, where)
    return encode(out)


def box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The tight ``(x, y, w, h)`` box in pixels of a mask's inside, or None for an empty mask."""
    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    cols = np.flatnonzero(np.asarray(mask).any(axis=0))
    if not len(rows):
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def area(rle: str, where=None) -> int:
    """The number of pixels inside a canonical run-length mask (without decoding it)."""
    return int(_pairs(rle, where)[:, 1].sum())
