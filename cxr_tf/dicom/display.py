"""DICOM -> display image, done as radiology viewers do it (no TensorFlow here).

stored values -> **modality LUT** (Modality LUT Sequence, else Rescale Slope/Intercept) -> **VOI**
(``voi="auto"``: the VOI LUT Sequence, else the header window (Window Center/Width with its VOI
LUT Function), else the full range; or forced: ``"header"``, ``"full"``, ``"percentile"``) ->
**presentation**, always after VOI: a Presentation LUT Sequence gives P-values; otherwise the image
is inverted when it is MONOCHROME1 or its Presentation LUT Shape is INVERSE (once: in DX images
INVERSE is how MONOCHROME1 is declared), so bone ends up bright -> 8 or 16 bits -> optional
histogram equalization. The LUT steps are pydicom 3's (``apply_modality_lut``, ``apply_voi``,
``apply_windowing``, ``apply_presentation_lut``); nothing here re-implements them.

``recipe="mimic-jpg"`` is instead the conversion that made MIMIC-CXR-JPG from the DICOMs: the
*stored* pixel values (no LUTs) min-max scaled to [0, 255] in float64 and truncated to uint8,
inverted (``255 - x``) where PhotometricInterpretation is MONOCHROME1, then histogram-equalized
exactly as OpenCV's ``cv2.equalizeHist`` (:func:`equalize_hist`). It is deterministic: the same
file gives the same bytes on every machine; MIMIC-CXR-JPG then saved it as JPEG at quality 95.

Files without a preamble or file meta header are read with ``force=True`` and the transfer syntax
they were written in (implicit VR little endian unless the data says otherwise). Compressed
transfer syntaxes decode through pydicom's plugins (pylibjpeg with pylibjpeg-libjpeg,
pylibjpeg-openjpeg, pylibjpeg-rle; see requirements.txt). A file that is not DICOM, not an image (a
structured report, a presentation state), multi-frame, colour, truncated, or compressed with no
decoder installed raises :class:`CxrImageError` naming the file and saying which.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from cxr_tf.core.errors import CxrImageError

VOI_MODES = ("auto", "header", "full", "percentile")
RECIPES = (None, "display", "mimic-jpg")
PLUGINS = "pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle"
# which pip package decodes which family of transfer syntaxes (UID prefix -> package)
DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.5": "pylibjpeg-libjpeg (with pylibjpeg)",      # JPEG baseline / extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg (with pylibjpeg)",     # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg (with pylibjpeg)",     # JPEG lossless SV1
    "1.2.840.10008.1.2.4.8": "pylibjpeg-libjpeg (with pylibjpeg) or pyjpegls",   # JPEG-LS
    "1.2.840.10008.1.2.4.9": "pylibjpeg-openjpeg (with pylibjpeg)",     # JPEG 2000
    "1.2.840.10008.1.2.4.20": "pylibjpeg-openjpeg (with pylibjpeg)",    # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (or none: pydicom has its own RLE decoder)",
}


def is_dicom(data: bytes, name: str = "") -> bool:
    """DICOM by content (``DICM`` after the 128-byte preamble) or by a ``.dcm``/``.dicom`` name."""
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def looks_like_dicom(data: bytes) -> bool:
    """DICOM by content only: the ``DICM`` preamble, or (a file without preamble and file meta) a
    first element in group 0002 or 0008 in either byte order, as every image dataset starts."""
    if data[128:132] == b"DICM":
        return True
    if len(data) < 8:
        return False
    return int.from_bytes(data[:2], "little") in (2, 8) or int.from_bytes(data[:2], "big") in (2, 8)


def open_dataset(path, data: bytes | None = None, header_only: bool = False):
    """Read a DICOM dataset (``force=True``; a missing transfer syntax is set from how the file
    was written); a file that is not DICOM, or is cut short, raises :class:`CxrImageError`."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    name = os.fspath(path)
    if data is None:
        from cxr_tf.core.files import read_bytes
        data = read_bytes(name)
    if not looks_like_dicom(data):
        raise CxrImageError(name, "not a DICOM file (no DICM preamble and no DICOM data elements)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=header_only)
            if not header_only:
                for elem in ds.iterall():   # parse every element now, so errors surface here
                    pass
    except Exception as exc:
        raise CxrImageError(name, f"corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from None
    if any("end of file" in str(w.message).lower() for w in caught):
        raise CxrImageError(name, "truncated DICOM file (end of file reached inside an element)")
    if not len(ds):
        raise CxrImageError(name, "not a DICOM file, or truncated (no data elements)")
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


# technical fields (no identifiers except the UIDs)
HEADER_FIELDS = {
    "modality": "Modality", "body_part": "BodyPartExamined", "view": "ViewPosition",
    "photometric": "PhotometricInterpretation", "rows": "Rows", "columns": "Columns",
    "bits_stored": "BitsStored", "pixel_spacing": "PixelSpacing", "manufacturer": "Manufacturer",
    "study_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID", "sop_uid": "SOPInstanceUID",
    "sop_class": "SOPClassUID", "window_center": "WindowCenter", "window_width": "WindowWidth",
    "frames": "NumberOfFrames", "samples_per_pixel": "SamplesPerPixel",
}
# identifying fields: read_header returns them raw; never write them without de-identifying
PHI_FIELDS = {
    "patient_name": "PatientName", "patient_id": "PatientID", "birth_date": "PatientBirthDate",
    "sex": "PatientSex", "age": "PatientAge", "study_date": "StudyDate", "study_time": "StudyTime",
    "accession": "AccessionNumber", "institution": "InstitutionName",
    "referring_physician": "ReferringPhysicianName", "operator": "OperatorsName",
}


def header_info(ds) -> dict:
    """The technical header fields (:data:`HEADER_FIELDS`) of a dataset as text, plus
    ``transfer_syntax`` (its UID) and ``transfer_syntax_name``."""
    out = {key: _text(ds, kw) for key, kw in HEADER_FIELDS.items()}
    syntax = ds.file_meta.TransferSyntaxUID
    out["transfer_syntax"] = str(syntax)
    out["transfer_syntax_name"] = getattr(syntax, "name", str(syntax))
    return out


def read_header(path, data: bytes | None = None) -> dict:
    """The header of a DICOM file without decoding pixels (``stop_before_pixels=True``): the keys
    of :data:`HEADER_FIELDS` (``view`` is ViewPosition), ``transfer_syntax``,
    ``transfer_syntax_name`` and the identifying keys of :data:`PHI_FIELDS`, all as raw text
    (identified: de-identify before writing, see :mod:`cxr_tf.dicom.deid`). Not DICOM: CxrImageError."""
    ds = open_dataset(path, data, header_only=True)
    out = header_info(ds)
    out.update({key: _text(ds, kw) for key, kw in PHI_FIELDS.items()})
    return out


def check_image(ds, name: str) -> None:
    """Refuse what is not one grayscale frame, naming the file and what it is."""
    if "PixelData" not in ds:
        from pydicom.uid import UID

        sop = ds.get("SOPClassUID") or ""
        media = getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID") or ""
        kind = UID(str(sop)).name if sop else "unknown SOP class"
        if "Image Storage" in kind or "Image Storage" in UID(str(media)).name or (sop and not UID(str(sop)).is_valid):
            raise CxrImageError(name, f"truncated DICOM file: {kind or media} but no Pixel Data")
        raise CxrImageError(name, f"DICOM file holds no image (no Pixel Data): it is a {kind}")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise CxrImageError(name, f"multi-frame DICOM ({frames} frames); a radiograph is one frame")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise CxrImageError(name, f"colour DICOM ({photometric}, {samples} samples per pixel); "
                                  "chest radiographs are grayscale, MONOCHROME1 or MONOCHROME2")


def decoder_package(syntax) -> str:
    """The pip package that decodes a compressed transfer syntax."""
    for prefix, package in DECODER_PACKAGES.items():
        if str(syntax).startswith(prefix):
            return package
    return PLUGINS


def stored_values(ds, name: str) -> np.ndarray:
    """The decoded stored pixel values (one frame), through pydicom's decoder plugins; errors name
    the file, the transfer syntax and, when no plugin is installed for it, the one to install."""
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.TransferSyntaxUID
    label = getattr(syntax, "name", str(syntax))
    if syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise CxrImageError(name, f"unsupported transfer syntax {label}") from None
        if not decoder.is_available:
            raise CxrImageError(name, f"no decoder installed for {label}: pip install {decoder_package(syntax)}")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise CxrImageError(name, f"cannot decode pixel data ({label}); corrupt or truncated: {exc}") from None
    if arr.ndim != 2:
        raise CxrImageError(name, f"decoded pixel data has shape {arr.shape}, expected one 2-D frame")
    return arr


def _voi(arr: np.ndarray, ds, voi: str, percentiles) -> tuple[np.ndarray, str]:
    """VOI-transformed values scaled to [0, 1], and which VOI was applied."""
    from pydicom.pixels import apply_voi, apply_windowing

    if voi == "auto" and ds.get("VOILUTSequence"):
        if arr.dtype.kind == "f" and np.array_equal(arr, np.round(arr)):
            arr = arr.astype(np.int64)      # a LUT is indexed by integers (pydicom warns on floats)
        out = apply_voi(arr, ds, index=0).astype(np.float64)
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64).ravel()
        lo, hi, used = float(lut.min()), float(lut.max()), "sequence"
    elif voi in ("auto", "header") and "WindowCenter" in ds and "WindowWidth" in ds:
        out = apply_windowing(arr, ds, index=0).astype(np.float64)
        # the window's output range, as pydicom defines it: its outputs for the extremes of any input
        with np.errstate(over="ignore"):
            lo, hi = (float(v) for v in apply_windowing(np.array([-1e15, 1e15]), ds, index=0))
        used = "header"
    elif voi == "percentile":
        out = arr.astype(np.float64)
        lo, hi = (float(v) for v in np.percentile(arr, percentiles))
        used = "percentile"
    else:   # "full", or "header"/"auto" when the header has no window
        out, lo, hi, used = arr.astype(np.float64), float(arr.min()), float(arr.max()), "full"
    if hi <= lo:
        return np.zeros(arr.shape, np.float64), used
    return np.clip((out - lo) / (hi - lo), 0.0, 1.0), used


def _present(values: np.ndarray, ds) -> tuple[np.ndarray, bool]:
    """Presentation of VOI output in [0, 1]: pydicom's ``apply_presentation_lut`` for a
    Presentation LUT Sequence or Shape, else MONOCHROME1 inverted. Returns values in [0, 1]
    (1 = white) and whether the image was inverted."""
    from pydicom.pixels import apply_presentation_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    # pydicom scales its input by the input's own min and max: bracket the values with the ends
    # of the VOI output range so that [0, 1] maps onto the whole LUT, whatever the image holds
    framed = np.concatenate([values.ravel(), [0.0, 1.0]])
    if ds.get("PresentationLUTSequence"):
        bits = int(ds.PresentationLUTSequence[0].LUTDescriptor[2])
        out = apply_presentation_lut(framed, ds)[:-2].astype(np.float64) / (2 ** bits - 1)
        return np.clip(out, 0.0, 1.0).reshape(values.shape), False
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    if shape == "INVERSE":
        return apply_presentation_lut(framed, ds)[:-2].reshape(values.shape), True
    if photometric == "MONOCHROME1":
        return 1.0 - values, True
    return values, False


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """Histogram equalization of a 2-D uint8 image, exactly as OpenCV's ``cv2.equalizeHist``:
    levels below and at the lowest occupied one map to 0, each later level ``i`` to
    ``round(cumhist(i) - hist(lowest)) * (255 / (pixels - hist(lowest)))`` computed in float32 and
    rounded half to even; a constant image is returned unchanged."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"equalize_hist takes uint8, got {img.dtype}")
    hist = np.bincount(img.ravel(), minlength=256)
    total = img.size
    if total == 0:
        return img.copy()
    first = int(np.flatnonzero(hist)[0])
    if hist[first] == total:
        return img.copy()
    scale = np.float32(255.0 / (total - hist[first]))
    cum = np.cumsum(hist).astype(np.int64) - hist[first]
    lut = np.clip(np.rint(cum.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    lut[: first + 1] = 0
    return lut[img]


def mimic_jpg(stored: np.ndarray, photometric: str) -> np.ndarray:
    """The MIMIC-CXR-JPG conversion of stored values: min-max to [0, 255] truncated to uint8,
    MONOCHROME1 inverted, histogram-equalized (:func:`equalize_hist`)."""
    arr = stored.astype(np.float64) - float(stored.min())
    peak = float(arr.max())
    out = (arr * (255.0 / peak)).astype(np.uint8) if peak > 0 else np.zeros(stored.shape, np.uint8)
    if photometric.strip().upper() == "MONOCHROME1":
        out = 255 - out
    return equalize_hist(out)


def _int(value) -> int:
    text = str(value).strip()
    return int(text) if text.isdigit() else 0


def read_dicom(path, data: bytes | None = None, *, voi: str = "auto", percentiles=(0.5, 99.5), bits: int = 8,
               equalize: bool = False, recipe: str | None = None) -> tuple[np.ndarray, dict]:
    """Decode a DICOM file to ``(image, info)``: a 2-D uint8 (``bits=8``) or uint16 (``bits=16``)
    grayscale image with bone bright. ``voi``: ``"auto"`` (VOI LUT Sequence, else header window,
    else full range), ``"header"``, ``"full"`` or ``"percentile"`` (``percentiles`` of the modality
    values map to black and white). ``equalize`` histogram-equalizes (on 8 bits). ``recipe``:
    ``None``/``"display"`` (the pipeline above) or ``"mimic-jpg"`` (see the module doc; ignores
    ``voi`` and ``equalize``). ``info``: the :func:`header_info` fields (``photometric``,
    ``transfer_syntax``, ``view``, ``rows``, ``columns``, ``bits_stored`` as int, ...) plus
    ``windowed``, ``voi`` (``sequence``, ``header``, ``full``, ``percentile`` or ``recipe``),
    ``inverted`` and ``recipe``."""
    _check_options(voi, recipe, bits)
    name = os.fspath(path)
    return display(open_dataset(name, data), name, voi=voi, percentiles=percentiles, bits=bits,
                   equalize=equalize, recipe=recipe)


def _check_options(voi, recipe, bits) -> None:
    if voi not in VOI_MODES:
        raise ValueError(f"voi must be one of {VOI_MODES}, got {voi!r}")
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES[1:]}, got {recipe!r}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")


def display(ds, name: str, *, voi: str = "auto", percentiles=(0.5, 99.5), bits: int = 8, equalize: bool = False,
            recipe: str | None = None) -> tuple[np.ndarray, dict]:
    """:func:`read_dicom` on a dataset already read with :func:`open_dataset` (``name`` is the
    file, for error messages)."""
    from pydicom.pixels import apply_modality_lut

    _check_options(voi, recipe, bits)
    check_image(ds, name)
    info = header_info(ds)
    stored = stored_values(ds, name)
    info["photometric"] = info["photometric"].strip().upper() or "MONOCHROME2"
    for key in ("rows", "columns", "bits_stored"):
        info[key] = _int(info[key])
    if recipe == "mimic-jpg":
        out = mimic_jpg(stored, info["photometric"])
        info.update(windowed=False, voi="recipe", inverted=info["photometric"] == "MONOCHROME1", recipe=recipe)
        return (out.astype(np.uint16) * 257 if bits == 16 else out), info
    try:
        values = apply_modality_lut(stored, ds)
        scaled, used = _voi(values, ds, voi, percentiles)
        shown, inverted = _present(scaled, ds)
    except (ValueError, KeyError, IndexError, NotImplementedError, TypeError, AttributeError) as exc:
        raise CxrImageError(name, f"cannot apply the header's LUTs: {exc}") from None
    full = 255 if bits == 8 else 65535
    out = np.round(shown * full).astype(np.uint8 if bits == 8 else np.uint16)
    if equalize:      # on 8 bits, as the MIMIC-CXR-JPG and CheXpert conversions did
        eq = equalize_hist(out if bits == 8 else np.round(shown * 255).astype(np.uint8))
        out = eq if bits == 8 else eq.astype(np.uint16) * 257
    info.update(windowed=used in ("header", "sequence"), voi=used, inverted=inverted, recipe="display")
    return out, info
