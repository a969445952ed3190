"""DICOM -> display image: modality LUT, VOI window from the header (else the full range),
MONOCHROME1 inverted so bone is bright, then 8-bit. Files without a preamble or file meta header
are read with ``force=True`` and an explicit transfer syntax. Compressed transfer syntaxes need the
pylibjpeg plugins (libjpeg, openjpeg, rle), which requirements.txt installs."""

from __future__ import annotations

import os

import numpy as np

from cxr_tf.errors import CxrImageError


def is_dicom(data: bytes, name: str = "") -> bool:
    """DICOM by content (``DICM`` after the 128-byte preamble) or by a ``.dcm``/``.dicom`` name."""
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def read_dicom(path: str | os.PathLike, data: bytes | None = None) -> tuple[np.ndarray, dict]:
    """Decode a DICOM file to (8-bit grayscale display image, metadata); errors name the file."""
    import io

    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    name = os.fspath(path)
    try:
        ds = pydicom.dcmread(io.BytesIO(data) if data is not None else name, force=True)
    except Exception as exc:
        raise CxrImageError(name, f"not a readable DICOM file: {exc}") from None
    if "PixelData" not in ds:
        raise CxrImageError(name, "DICOM file has no pixel data")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        ds.file_meta = meta or pydicom.dataset.FileMetaDataset()
        implicit = getattr(ds, "is_implicit_VR", True) is not False
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    syntax = str(ds.file_meta.TransferSyntaxUID)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise CxrImageError(name, f"cannot decode pixel data (transfer syntax {syntax}): {exc}. "
                                  "Compressed DICOM needs pylibjpeg, pylibjpeg-libjpeg, "
                                  "pylibjpeg-openjpeg and pylibjpeg-rle") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1)
    elif arr.ndim == 3:
        arr = arr[0]  # first frame
    arr = apply_modality_lut(arr, ds).astype(np.float64)
    windowed = "WindowCenter" in ds and "WindowWidth" in ds
    if windowed:
        arr = apply_voi_lut(arr, ds, index=0).astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    out = np.zeros(arr.shape, np.uint8) if hi <= lo else np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        out = 255 - out
    info = {"photometric": photometric, "transfer_syntax": syntax, "windowed": windowed,
            "rows": int(ds.Rows), "columns": int(ds.Columns),
            "bits_stored": int(getattr(ds, "BitsStored", 0) or 0),
            "view": str(getattr(ds, "ViewPosition", "") or "")}
    return out, info
