"""DICOM -> display image, done as radiology viewers do it (no TensorFlow here).

stored values -> **modality LUT** (Modality LUT Sequence, else Rescale Slope/Intercept) -> **VOI**
(``voi="auto"``: the VOI LUT Sequence, else the header window with its VOI LUT Function, else the
full range; or forced: ``"header"``, ``"full"``, ``"percentile"``) -> **presentation**: a
Presentation LUT Sequence, else Presentation LUT Shape (INVERSE inverts), else MONOCHROME1 is
inverted, always after VOI, so bone ends up bright -> 8 or 16 bits -> optional histogram
equalization. The LUT steps are pydicom 3's (``apply_modality_lut``, ``apply_voi``,
``apply_windowing``, ``apply_presentation_lut``); nothing here re-implements them.

``recipe="mimic-jpg"`` is instead the conversion that made MIMIC-CXR-JPG from the DICOMs (the
MIT-LCP code): the stored pixel values min-max scaled to [0, 255] and truncated to 8 bits, inverted
where PhotometricInterpretation is MONOCHROME1, then histogram-equalized as OpenCV's
``equalizeHist`` does (:func:`equalize_hist`, exact).

Files without a preamble or file meta header are read with ``force=True`` and the transfer syntax
they were written in. Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg,
pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle; see requirements.txt). A file that is not an
image (a structured report, a presentation state), a multi-frame or colour file, and a truncated or
undecodable file each raise :class:`CxrImageError` naming the file.
"""

from __future__ import annotations

import io
import os

import numpy as np

from cxr_tf.errors import CxrImageError

VOI_MODES = ("auto", "header", "full", "percentile")
RECIPES = (None, "display", "mimic-jpg")
PLUGINS = "pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle"


def is_dicom(data: bytes, name: str = "") -> bool:
    """DICOM by content (``DICM`` after the 128-byte preamble) or by a ``.dcm``/``.dicom`` name."""
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def open_dataset(path, data: bytes | None = None, header_only: bool = False):
    """Read a DICOM dataset (``force=True``; a missing transfer syntax is set from how the file
    was written); errors name the file."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    name = os.fspath(path)
    try:
        ds = pydicom.dcmread(io.BytesIO(data) if data is not None else name, force=True,
                             stop_before_pixels=header_only)
    except FileNotFoundError:
        raise CxrImageError(name, "file not found") from None
    except Exception as exc:
        raise CxrImageError(name, f"not a readable DICOM file: {exc}") from None
    if not len(ds):
        raise CxrImageError(name, "not a DICOM file (no data elements)")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        ds.file_meta = meta or pydicom.dataset.FileMetaDataset()
        implicit = getattr(ds, "is_implicit_VR", True) is not False
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


HEADER_FIELDS = {
    "modality": "Modality", "body_part": "BodyPartExamined", "view": "ViewPosition",
    "photometric": "PhotometricInterpretation", "rows": "Rows", "columns": "Columns",
    "bits_stored": "BitsStored", "pixel_spacing": "PixelSpacing", "manufacturer": "Manufacturer",
    "study_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID", "sop_uid": "SOPInstanceUID",
    "sop_class": "SOPClassUID", "window_center": "WindowCenter", "window_width": "WindowWidth",
    "frames": "NumberOfFrames", "samples_per_pixel": "SamplesPerPixel",
}


def header_info(ds) -> dict:
    """The technical header fields of a dataset as text (identifiers included: de-identify before
    writing them anywhere, see :mod:`cxr_tf.deid`)."""
    out = {key: _text(ds, kw) for key, kw in HEADER_FIELDS.items()}
    out["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
    return out


def read_header(path, data: bytes | None = None) -> dict:
    """The header fields of :data:`HEADER_FIELDS` (and ``transfer_syntax``) without decoding pixels."""
    return header_info(open_dataset(path, data, header_only=True))


def check_image(ds, name: str) -> None:
    """Refuse what is not one grayscale frame, naming the file and what it is."""
    if "PixelData" not in ds:
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", str(sop)) if sop else "unknown SOP class"
        raise CxrImageError(name, f"DICOM file holds no image (no Pixel Data; {kind})")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise CxrImageError(name, f"multi-frame DICOM ({frames} frames); a radiograph is one frame")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise CxrImageError(name, f"colour DICOM ({photometric}, {ds.get('SamplesPerPixel', 1)} samples per "
                                  "pixel); chest radiographs are MONOCHROME1 or MONOCHROME2")


def stored_values(ds, name: str) -> np.ndarray:
    """The decoded stored pixel values (one frame); errors name the file and the transfer syntax."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except Exception as exc:
        hint = f" Compressed DICOM needs {PLUGINS}." if syntax.is_compressed else ""
        raise CxrImageError(name, f"cannot decode pixel data ({getattr(syntax, 'name', syntax)}): {exc}.{hint}") \
            from None
    if arr.ndim != 2:
        raise CxrImageError(name, f"decoded pixel data has shape {arr.shape}, expected one 2-D frame")
    return arr


def _voi(arr: np.ndarray, ds, voi: str, percentiles) -> tuple[np.ndarray, str]:
    """VOI-transformed values scaled to [0, 1], and which VOI was applied."""
    from pydicom.pixels import apply_voi, apply_windowing

    if voi == "auto" and ds.get("VOILUTSequence"):
        out = apply_voi(arr, ds, index=0).astype(np.float64)
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64).ravel()
        lo, hi, used = float(lut.min()), float(lut.max()), "sequence"
    elif voi in ("auto", "header") and "WindowCenter" in ds and "WindowWidth" in ds:
        out = apply_windowing(arr, ds, index=0).astype(np.float64)
        # the window's output range, as pydicom defines it: the extremes of any input
        lo, hi = (float(v) for v in apply_windowing(np.array([-1e15, 1e15]), ds, index=0))
        used = "header"
    elif voi == "percentile":
        out = arr
        lo, hi = (float(v) for v in np.percentile(arr, percentiles))
        used = "percentile"
    else:
        out, lo, hi, used = arr, float(arr.min()), float(arr.max()), "full"
    if hi <= lo:
        return np.zeros(arr.shape, np.float64), used
    return np.clip((out - lo) / (hi - lo), 0.0, 1.0), used


def _present(values: np.ndarray, ds) -> tuple[np.ndarray, bool]:
    """Presentation: a Presentation LUT Sequence (pydicom), else the Presentation LUT Shape, else
    MONOCHROME1 inverted. Returns values in [0, 1] (1 = white) and whether they were inverted."""
    from pydicom.pixels import apply_presentation_lut

    if ds.get("PresentationLUTSequence"):
        out = apply_presentation_lut(np.round(values * 65535).astype(np.uint16), ds).astype(np.float64)
        span = float(out.max() - out.min())
        return ((out - out.min()) / span if span else np.zeros_like(out)), False
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    invert = shape == "INVERSE" if shape in ("INVERSE", "IDENTITY") else photometric == "MONOCHROME1"
    return (1.0 - values if invert else values), invert


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """Histogram equalization of a uint8 image, exactly as OpenCV's ``cv2.equalizeHist``: the
    lowest occupied level maps to 0, the rest by the cumulative histogram scaled in float32 and
    rounded; a constant image stays as it is."""
    if img.dtype != np.uint8:
        raise ValueError(f"equalize_hist takes uint8, got {img.dtype}")
    hist = np.bincount(img.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    total = img.size
    if hist[first] == total:
        return img.copy()
    scale = np.float32(255.0 / (total - hist[first]))
    cum = np.cumsum(hist).astype(np.int64) - hist[first]
    lut = np.clip(np.rint(cum.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    lut[: first + 1] = 0
    return lut[img]


def mimic_jpg(stored: np.ndarray, photometric: str) -> np.ndarray:
    """The MIMIC-CXR-JPG conversion of stored values: min-max to [0, 255] truncated to uint8,
    MONOCHROME1 inverted, histogram-equalized."""
    arr = stored.astype(np.float64) - float(stored.min())
    peak = float(arr.max())
    out = (arr * (255.0 / peak)).astype(np.uint8) if peak > 0 else np.zeros(stored.shape, np.uint8)
    if photometric.strip().upper() == "MONOCHROME1":
        out = 255 - out
    return equalize_hist(out)


def read_dicom(path, data: bytes | None = None, *, voi: str = "auto", percentiles=(0.5, 99.5), bits: int = 8,
               equalize: bool = False, recipe: str | None = None) -> tuple[np.ndarray, dict]:
    """Decode a DICOM file to (display image, info): uint8 (``bits=8``) or uint16 (``bits=16``)
    grayscale with bone bright. ``info`` has the header fields of :func:`header_info` plus
    ``windowed``, ``voi`` (``sequence``, ``header``, ``full``, ``percentile`` or ``recipe``) and
    ``inverted``. See the module doc for the steps and for ``recipe="mimic-jpg"``."""
    from pydicom.pixels import apply_modality_lut

    name = os.fspath(path)
    if voi not in VOI_MODES:
        raise ValueError(f"voi must be one of {VOI_MODES}, got {voi!r}")
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES[1:]}, got {recipe!r}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    ds = open_dataset(name, data)
    check_image(ds, name)
    info = header_info(ds)
    stored = stored_values(ds, name)
    info["photometric"] = info["photometric"] or "MONOCHROME2"
    for key in ("rows", "columns", "bits_stored"):
        info[key] = int(info[key]) if str(info[key]).strip().isdigit() else 0
    if recipe == "mimic-jpg":
        out = mimic_jpg(stored, info["photometric"])
        info.update(windowed=False, voi="recipe", inverted=info["photometric"].upper() == "MONOCHROME1",
                    recipe=recipe)
        return (out.astype(np.uint16) * 257 if bits == 16 else out), info
    try:
        values = apply_modality_lut(stored, ds).astype(np.float64)
        scaled, used = _voi(values, ds, voi, percentiles)
        shown, inverted = _present(scaled, ds)
    except (ValueError, KeyError, IndexError, NotImplementedError, TypeError) as exc:
        raise CxrImageError(name, f"cannot apply the header's LUTs: {exc}") from None
    full = 255 if bits == 8 else 65535
    out = np.round(shown * full).astype(np.uint8 if bits == 8 else np.uint16)
    if equalize:      # on 8 bits, as the MIMIC-CXR-JPG and CheXpert conversions did
        eq = equalize_hist(out if bits == 8 else np.round(shown * 255).astype(np.uint8))
        out = eq if bits == 8 else eq.astype(np.uint16) * 257
    info.update(windowed=used in ("header", "sequence"), voi=used, inverted=inverted, recipe="display")
    return out, info
