"""Every transfer syntax a chest radiograph arrives in decodes through pydicom's plugins to the
pixels of the uncompressed file: exactly for the lossless ones, within a stated error for the lossy
ones. The pixels come from a real CR file (transcoded with pydicom and imagecodecs, since the
shared files carry only three syntaxes) and from a phantom when ../shared is absent."""

import io

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
import pydicom.uid as U  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402

from cxr_tf.imaging.dicom import open_dataset, read_dicom, stored_values  # noqa: E402

ic = pytest.importorskip("imagecodecs")     # encoders for the syntaxes pydicom cannot write

SIDE = 64


def _phantom12() -> np.ndarray:
    y, x = np.mgrid[:SIDE, :SIDE]
    rng = np.random.default_rng(0)
    return ((np.sin(x / 7) + np.cos(y / 5) + 2) * 900 + rng.integers(0, 50, (SIDE, SIDE))).astype(np.uint16)


@pytest.fixture(params=["phantom", "real"])
def pixels(request) -> np.ndarray:
    """12-bit stored values: a phantom, or the middle of a real CR chest film (10 bits, shifted to 12)."""
    if request.param == "phantom":
        return _phantom12()
    shared = request.getfixturevalue("shared_dir")
    arr = pydicom.dcmread(shared / "dicom" / "CR-MONO1-10-chest.dcm", force=True)
    arr.file_meta = FileMetaDataset()
    arr.file_meta.TransferSyntaxUID = U.ImplicitVRLittleEndian
    full = arr.pixel_array
    h, w = full.shape
    crop = full[h // 2 - SIDE // 2: h // 2 + SIDE // 2, w // 2 - SIDE // 2: w // 2 + SIDE // 2]
    return (crop.astype(np.uint16) << 2).astype(np.uint16)


def _dataset(arr: np.ndarray, bits: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = U.generate_uid(entropy_srcs=["ts"])
    ds.Modality = "DX"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits == 8 else 16), bits, bits - 1, 0
    ds.PixelData = arr.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    return ds


def _write(ds: Dataset, path, **kw):
    buf = io.BytesIO()
    ds.save_as(buf, **kw)
    path.write_bytes(buf.getvalue())
    return path


def _encapsulated(arr, bits, syntax, frame: bytes, path):
    ds = _dataset(arr, bits)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _write(ds, path, enforce_file_format=True)


def _pydicom_compressed(arr, bits, syntax, path, **kw):
    ds = _dataset(arr, bits)
    ds.compress(syntax, arr, generate_instance_uid=False, **kw)
    return _write(ds, path, enforce_file_format=True)


# name -> (bits of the source, writer(arr, path), max abs error allowed in stored values or None: exact)
LOSSY_MEAN = 0.01       # lossy syntaxes: mean abs error below 1 % of the 12-bit range
CASES = {
    "JPEGBaseline8Bit": (8, lambda a, p: _encapsulated(a, 8, U.JPEGBaseline8Bit, ic.jpeg8_encode(a, level=95), p),
                         "lossy"),
    "JPEGExtended12Bit": (12, lambda a, p: _encapsulated(a, 12, U.JPEGExtended12Bit,
                                                         ic.jpeg8_encode(a, level=95, bitspersample=12), p), "lossy"),
    "JPEGLossless": (12, lambda a, p: _encapsulated(a, 12, U.JPEGLossless, ic.ljpeg_encode(a, bitspersample=12), p),
                     None),
    "JPEGLosslessSV1": (12, lambda a, p: _encapsulated(a, 12, U.JPEGLosslessSV1,
                                                       ic.ljpeg_encode(a, bitspersample=12), p), None),
    "JPEGLSLossless": (12, lambda a, p: _encapsulated(a, 12, U.JPEGLSLossless, ic.jpegls_encode(a), p), None),
    "JPEGLSNearLossless": (12, lambda a, p: _encapsulated(a, 12, U.JPEGLSNearLossless,
                                                          ic.jpegls_encode(a, level=2), p), 2),
    "JPEG2000Lossless": (12, lambda a, p: _pydicom_compressed(a, 12, U.JPEG2000Lossless, p), None),
    "JPEG2000": (12, lambda a, p: _pydicom_compressed(a, 12, U.JPEG2000, p, j2k_cr=[10]), "lossy"),
    "HTJ2KLossless": (12, lambda a, p: _encapsulated(a, 12, U.HTJ2KLossless, ic.htj2k_encode(a), p), None),
    "HTJ2K": (12, lambda a, p: _encapsulated(a, 12, U.HTJ2K, ic.htj2k_encode(a, level=0.0005), p), "lossy"),
    "RLELossless": (12, lambda a, p: _pydicom_compressed(a, 12, U.RLELossless, p), None),
    "DeflatedExplicitVRLittleEndian": (12, lambda a, p: _deflated(a, p), None),
    "ExplicitVRLittleEndian": (12, lambda a, p: _write(_dataset(a, 12), p, enforce_file_format=True), None),
    "ImplicitVRLittleEndian": (12, lambda a, p: _implicit(a, p, meta=True), None),
    "ImplicitVRLittleEndian, no preamble or file meta": (12, lambda a, p: _implicit(a, p, meta=False), None),
    "ExplicitVRBigEndian": (12, lambda a, p: _big_endian(a, p), None),
}


def _deflated(arr, path):
    ds = _dataset(arr, 12)
    ds.file_meta.TransferSyntaxUID = U.DeflatedExplicitVRLittleEndian
    return _write(ds, path, enforce_file_format=True)


def _implicit(arr, path, meta: bool):
    ds = _dataset(arr, 12)
    if meta:
        ds.file_meta.TransferSyntaxUID = U.ImplicitVRLittleEndian
        return _write(ds, path, enforce_file_format=True)
    del ds.file_meta
    return _write(ds, path, implicit_vr=True, little_endian=True)


def _big_endian(arr, path):
    ds = _dataset(arr, 12)
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRBigEndian
    ds.PixelData = arr.astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    return _write(ds, path, enforce_file_format=True)


@pytest.mark.parametrize("name", list(CASES))
def test_syntax_decodes_to_the_uncompressed_pixels(name, pixels, tmp_path):
    bits, write, tolerance = CASES[name]
    arr = (pixels >> 4).astype(np.uint8) if bits == 8 else pixels
    path = write(arr, tmp_path / "x.dcm")
    ds = open_dataset(path)
    if "no preamble" in name:
        assert path.read_bytes()[128:132] != b"DICM"
    else:
        assert ds.file_meta.TransferSyntaxUID == getattr(U, name)
    got = stored_values(ds, str(path)).astype(np.int64)
    assert got.shape == arr.shape
    err = np.abs(got - arr.astype(np.int64))
    if tolerance is None:
        np.testing.assert_array_equal(got, arr)                   # lossless: exact
    elif tolerance == "lossy":
        assert err.mean() < LOSSY_MEAN * (2 ** bits - 1), (name, err.mean())
        assert err.max() > 0 or name != "JPEGBaseline8Bit"
    else:
        assert err.max() <= tolerance                             # near-lossless bound
    display, info = read_dicom(path)                              # and the whole display pipeline runs
    assert display.dtype == np.uint8 and display.shape == arr.shape and info["transfer_syntax"]
    if tolerance is None:
        reference, _ = read_dicom(_write(_dataset(arr, bits), tmp_path / "ref.dcm", enforce_file_format=True))
        np.testing.assert_array_equal(display, reference)
