"""Moving heatmaps and boxes from model-input coordinates to original-image pixels.

Evaluation feeds the model the stored image (``stored_size`` square, see ``cxr-tf prepare``)
resized whole to ``image_size``; the stored image is the original under the affine map recorded
per image (``x_stored = x_orig * sx + tx``). So an original pixel centre (x + 0.5, y + 0.5) sits at
input coordinate ``((x + 0.5) * sx + tx) * image_size / stored_size``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates


def input_to_original(x, y, *, image_size: int, stored_size: int, affine) -> tuple:
    """Model-input coordinates -> original pixel coordinates (pixel-edge convention)."""
    sx, sy, tx, ty = affine
    k = stored_size / image_size
    return (np.asarray(x) * k - tx) / sx, (np.asarray(y) * k - ty) / sy


def box_to_input(box, *, image_size: int, stored_size: int, affine, orig_size=None) -> tuple:
    """An (x, y, w, h) box in original pixels -> model-input pixels (the forward map of
    :func:`input_to_original`). ``orig_size`` is accepted so the same keywords serve both ways."""
    sx, sy, tx, ty = (float(v) for v in affine)
    k = image_size / stored_size
    return ((box[0] * sx + tx) * k, (box[1] * sy + ty) * k, box[2] * sx * k, box[3] * sy * k)


def to_original(heatmap: np.ndarray, *, image_size: int, stored_size: int, affine, orig_size) -> np.ndarray:
    """Resample an ``image_size`` x ``image_size`` heatmap onto the original image's pixel grid
    (``orig_size`` = (width, height)), bilinearly; areas that were padding get 0."""
    sx, sy, tx, ty = affine
    w, h = int(orig_size[0]), int(orig_size[1])
    k = image_size / stored_size
    xs = ((np.arange(w) + 0.5) * sx + tx) * k - 0.5     # sample positions in heatmap index space
    ys = ((np.arange(h) + 0.5) * sy + ty) * k - 0.5
    heat = np.asarray(heatmap, np.float32)
    rows = np.broadcast_to(ys[:, None], (h, w))
    cols = np.broadcast_to(xs[None, :], (h, w))
    out = map_coordinates(heat, [rows, cols], order=1, mode="nearest").astype(np.float32)
    n_rows, n_cols = heat.shape
    outside = (rows < -0.5) | (rows > n_rows - 0.5) | (cols < -0.5) | (cols > n_cols - 0.5)
    out[outside] = 0.0
    return out
