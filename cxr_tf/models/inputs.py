"""Image files -> model input, exactly as the training records were made: decode by content (PNG,
JPEG, DICOM, ...), make square with the recorded aspect handling at the recorded stored size,
then resize to the model's input size as the evaluation pipeline does. predict, explain and
export use this; a model that needs none of it takes raw pixels directly."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cxr_tf.core.errors import CxrDataError, CxrImageError
from cxr_tf.imaging import Affine, decode_file, fit

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff")


@dataclass
class LoadedImage:
    """One image as the model sees it, and how to get back to the original."""

    path: str
    original: np.ndarray      # uint8 [h, w], the decoded file
    affine: Affine            # original -> stored pixels
    pixels: np.ndarray        # uint8 [S, S, 1], the model input


def collect_images(inputs) -> list[Path]:
    """Files given directly, plus image files found recursively in given directories (sorted)."""
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            out.append(item)
        else:
            raise CxrDataError(item, "no such file or directory")
    return out


def image_input(source, model) -> LoadedImage:
    """One image file (or a decoded 2-D uint8 array) -> the model's input, uint8 [S, S, 1]."""
    import tensorflow as tf

    from cxr_tf.models.build import preprocessing_of
    from cxr_tf.pipeline import preprocess_batch

    prep = preprocessing_of(model)
    original = decode_file(source) if not isinstance(source, np.ndarray) else np.asarray(source, np.uint8)
    stored, affine = fit(original, prep["stored_size"], prep["aspect"])
    pixels = preprocess_batch(tf.constant(stored[None, ..., None]), prep["input_size"]).numpy()[0]
    name = "<array>" if isinstance(source, np.ndarray) else str(source)
    return LoadedImage(name, original, affine, pixels)


def iter_batches(files: Iterable, model, batch_size: int = 16, skip_bad: bool = False,
                 skipped: list | None = None) -> Iterator[list[LoadedImage]]:
    """Batches of :class:`LoadedImage` for the files. An unreadable image raises
    :class:`CxrImageError` naming it, unless ``skip_bad``: then it is appended to ``skipped`` as
    (file, reason) and logged."""
    batch: list[LoadedImage] = []
    for path in files:
        try:
            batch.append(image_input(path, model))
        except CxrImageError as exc:
            if not skip_bad:
                raise
            log.warning("skipping unreadable %s: %s", path, exc.problem)
            if skipped is not None:
                skipped.append((str(path), exc.problem))
            continue
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def stack(batch: list[LoadedImage]) -> np.ndarray:
    """The model input of a batch, uint8 [B, S, S, 1]."""
    return np.stack([item.pixels for item in batch])
