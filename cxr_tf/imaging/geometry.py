"""Resizing to a square with explicit aspect handling, and the affine map it applied.

Every stored image carries the map from original pixel coordinates to stored ones,
``x_stored = x_orig * sx + tx`` and ``y_stored = y_orig * sy + ty`` (pixel-edge convention: the
image spans [0, width]), so boxes and heatmaps can be moved between the two exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

ASPECTS = ("pad", "crop", "stretch")


@dataclass(frozen=True)
class Affine:
    """Axis-aligned map from original to stored pixel coordinates."""

    sx: float
    sy: float
    tx: float
    ty: float

    def forward(self, x, y):
        """Original -> stored coordinates."""
        return np.asarray(x) * self.sx + self.tx, np.asarray(y) * self.sy + self.ty

    def inverse(self, x, y):
        """Stored -> original coordinates."""
        return (np.asarray(x) - self.tx) / self.sx, (np.asarray(y) - self.ty) / self.sy

    def box_forward(self, box):
        """(x, y, w, h) in original pixels -> stored pixels."""
        x, y = self.forward(box[0], box[1])
        return float(x), float(y), float(box[2] * self.sx), float(box[3] * self.sy)

    def box_inverse(self, box):
        """(x, y, w, h) in stored pixels -> original pixels."""
        x, y = self.inverse(box[0], box[1])
        return float(x), float(y), float(box[2] / self.sx), float(box[3] / self.sy)

    def as_dict(self) -> dict:
        """Plain dict for JSON/CSV."""
        return asdict(self)


def frame_to_pixels(xywh, width, height, frame: float) -> np.ndarray:
    """(x, y, w, h) boxes given in a square ``frame``-pixel frame (the NIH box list's 1024) ->
    the pixels of a file that is ``width`` x ``height`` (scalars, or one per box): a copy that was
    downscaled keeps the frame, so its boxes scale with it."""
    xywh = np.asarray(xywh, np.float64).reshape(-1, 4)
    sx = np.asarray(width, np.float64).reshape(-1, 1) / frame
    sy = np.asarray(height, np.float64).reshape(-1, 1) / frame
    return xywh * np.concatenate([sx, sy, sx, sy], axis=1)


def fit(pixels: np.ndarray, size: int, aspect: str = "pad") -> tuple[np.ndarray, Affine]:
    """Resize a 2-D uint8 image to ``size`` x ``size``.

    ``pad``: keep the aspect ratio and centre on a black square (nothing is cut);
    ``crop``: keep the aspect ratio and cut the longer side centrally (nothing is padded);
    ``stretch``: scale each axis independently (what CheXNet-style loaders do).
    For square inputs all three are the same. Resampling is antialiased bilinear.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {pixels.shape}")
    h, w = pixels.shape
    img = Image.fromarray(pixels)
    if aspect == "stretch" or w == h:
        out = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(out), Affine(size / w, size / h, 0.0, 0.0)
    if aspect == "crop":
        side = min(w, h)
        ox, oy = (w - side) // 2, (h - side) // 2
        out = img.resize((size, size), Image.Resampling.BILINEAR, box=(ox, oy, ox + side, oy + side),
                         reducing_gap=3.0)
        s = size / side
        return np.asarray(out), Affine(s, s, -ox * s, -oy * s)
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0))
    canvas = np.zeros((size, size), dtype=np.uint8)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    canvas[oy:oy + nh, ox:ox + nw] = small
    return canvas, Affine(nw / w, nh / h, float(ox), float(oy))
