"""Decode images by content, not by file name, to 8-bit grayscale.

RGBA, RGB, palette, 16-bit and float images are converted; a JPEG saved under a ``.png`` name is
read as the JPEG it is. Empty, truncated or non-image files raise :class:`CxrImageError` naming the
file and the problem.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from cxr_tf.core.errors import CxrImageError
from cxr_tf.core.files import read_bytes

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-black image
Image.MAX_IMAGE_PIXELS = 20000 * 20000   # radiographs are large, but not decompression bombs


def to_uint8_gray(img: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any mode to an 8-bit grayscale array.

    Colour modes use ITU-R 601 luma after dropping alpha. Integer images wider than 8 bits are
    divided by the full scale of the smallest bit depth that holds their maximum (12-bit data in a
    16-bit container -> /4095), keeping zero and relative intensities; float images are mapped
    linearly from their own [min, max] to [0, 255] (a constant image maps to 0).
    """
    mode = img.mode
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("1", "P", "PA", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa"):
        if mode in ("P", "PA"):
            img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
        if img.mode in ("RGBA", "LA", "La", "RGBa"):
            img = img.convert("RGB" if img.mode.startswith("RGB") else "L")
        return np.asarray(img.convert("L"), dtype=np.uint8)
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=-1)
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0:
        return bit_depth_scale(arr)
    return _rescale(arr.astype(np.float64))


def bit_depth_scale(arr: np.ndarray) -> np.ndarray:
    """Non-negative integers -> uint8 by the full scale of the smallest bit depth (≥ 8) holding
    their maximum."""
    bits = max(8, int(arr.max()).bit_length())
    return np.round(arr.astype(np.float64) * (255.0 / (2 ** bits - 1))).astype(np.uint8)


def _rescale(arr: np.ndarray) -> np.ndarray:
    """Linear map of an array's [min, max] to uint8 [0, 255]."""
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.round((arr - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def decode_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, BMP, TIFF, ...) to an 8-bit grayscale array."""
    if not data:
        raise CxrImageError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                return to_uint8_gray(img)
    except UnidentifiedImageError:
        raise CxrImageError(name, f"not a recognised image format (first bytes {data[:8]!r})") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise CxrImageError(name, f"corrupt or truncated image: {exc}") from None


def decode_file(path: str | os.PathLike, **dicom_options) -> np.ndarray:
    """Read and decode an image file (PNG, JPEG, ... or DICOM) to an 8-bit grayscale array;
    errors name the file. ``dicom_options`` (e.g. ``recipe="mimic-jpg"``) go to
    :func:`cxr_tf.dicom.display.read_dicom` for a DICOM file and are refused for any other."""
    data = read_bytes(path)
    from cxr_tf.dicom.display import is_dicom
    if data and is_dicom(data, os.fspath(path)):
        from cxr_tf.dicom.display import read_dicom
        return read_dicom(path, data, **dicom_options)[0]
    if dicom_options:
        raise CxrImageError(path, f"DICOM display options {sorted(dicom_options)} given for a file that is not DICOM")
    return decode_bytes(data, os.fspath(path))
