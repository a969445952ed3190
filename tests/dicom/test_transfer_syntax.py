"""Every transfer syntax a chest radiograph arrives in decodes through pydicom's plugins to the
uncompressed pixels: exactly for the lossless ones, within a stated tolerance for the lossy ones.

Syntaxes pydicom can encode are made with ``Dataset.compress`` (RLE; JPEG-LS via pyjpegls; JPEG
2000 via pylibjpeg-openjpeg). The JPEG family and HTJ2K, which pydicom cannot encode, are encoded
with imagecodecs (libjpeg-turbo, OpenJPH) and encapsulated with ``pydicom.encaps.encapsulate``;
decoding always goes through :func:`cxr_tf.dicom.display.stored_values` (pydicom's decoders)."""

import io

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom import uid as U  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402

from cxr_tf.dicom.display import open_dataset, read_dicom, stored_values  # noqa: E402

_rng = np.random.default_rng(7)
_y, _x = np.mgrid[:64, :64]
# a smooth chest-like 12-bit field with noise, so that no codec gets a trivial image
IMG12 = np.clip(1500 + 1800 * np.exp(-((_x - 32) ** 2) / 120.0) + 6 * _y + _rng.normal(0, 40, (64, 64)),
                0, 4095).astype(np.uint16)
IMG8 = (IMG12 >> 4).astype(np.uint8)


def _dataset(pixels: np.ndarray, bits: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = U.ComputedRadiographyImageStorage, U.generate_uid()
    ds.Modality = "CR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    ds.set_pixel_data(pixels, "MONOCHROME2", bits)
    return ds


def _encapsulated(pixels, bits, frame: bytes, syntax) -> Dataset:
    ds = _dataset(pixels, bits)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _roundtrip(ds: Dataset, tmp_path, **save) -> np.ndarray:
    """Write ``ds`` to a file and decode it again through cxr_tf (and check read_dicom too)."""
    path = tmp_path / "x.dcm"
    buf = io.BytesIO()
    ds.save_as(buf, **(save or {"enforce_file_format": True}))
    path.write_bytes(buf.getvalue())
    back = open_dataset(path)
    arr = stored_values(back, str(path))
    img, info = read_dicom(path)
    assert img.shape == arr.shape == (64, 64) and img.dtype == np.uint8
    assert info["transfer_syntax"] == str(back.file_meta.TransferSyntaxUID)
    return arr.astype(np.int64)


def _err(decoded, original):
    diff = np.abs(decoded - original.astype(np.int64))
    return int(diff.max()), float(diff.mean())


# --- native (uncompressed) ---------------------------------------------------------------------

@pytest.mark.parametrize("syntax", [U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian,
                                    U.DeflatedExplicitVRLittleEndian], ids=lambda s: s.name)
def test_native_little_endian(tmp_path, syntax):
    ds = _dataset(IMG12, 12)
    ds.file_meta.TransferSyntaxUID = syntax
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


def test_explicit_vr_big_endian(tmp_path):
    ds = _dataset(IMG12, 12)
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRBigEndian
    ds.PixelData = IMG12.astype(">u2").tobytes()     # OW in big endian: the writer does not swap bytes
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_no_preamble_no_file_meta(tmp_path, implicit):
    ds = _dataset(IMG12, 12)
    del ds.file_meta
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=implicit, little_endian=True)
    data = path.read_bytes()
    assert data[128:132] != b"DICM" and data[:2] == b"\x08\x00"
    back = open_dataset(path)
    assert back.file_meta.TransferSyntaxUID == (U.ImplicitVRLittleEndian if implicit else U.ExplicitVRLittleEndian)
    assert np.array_equal(stored_values(back, str(path)), IMG12)


# --- compressed by pydicom ---------------------------------------------------------------------

def test_rle_lossless(tmp_path):
    ds = _dataset(IMG12, 12)
    ds.compress(U.RLELossless)
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


def test_jpeg_ls_lossless(tmp_path):
    pytest.importorskip("jpeg_ls", reason="pyjpegls encodes JPEG-LS for this test")
    ds = _dataset(IMG12, 12)
    ds.compress(U.JPEGLSLossless)
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


def test_jpeg_ls_near_lossless(tmp_path):
    pytest.importorskip("jpeg_ls", reason="pyjpegls encodes JPEG-LS for this test")
    ds = _dataset(IMG12, 12)
    ds.compress(U.JPEGLSNearLossless, jls_error=3)
    max_err, _ = _err(_roundtrip(ds, tmp_path), IMG12)
    assert 0 < max_err <= 3          # JPEG-LS near-lossless guarantees |error| <= NEAR


def test_jpeg_2000_lossless(tmp_path):
    ds = _dataset(IMG12, 12)
    ds.compress(U.JPEG2000Lossless)
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


def test_jpeg_2000_lossy(tmp_path):
    ds = _dataset(IMG12, 12)
    ds.compress(U.JPEG2000, j2k_cr=[10])
    max_err, mean_err = _err(_roundtrip(ds, tmp_path), IMG12)
    # tolerance at compression ratio 10 on this noisy image: max 4 %, mean 1 % of the 12-bit range
    assert 0 < max_err <= 0.04 * 4095 and mean_err <= 0.01 * 4095


# --- encoded with imagecodecs (pydicom cannot encode these), decoded by pydicom ----------------

def test_jpeg_baseline_8bit(tmp_path):
    ic = pytest.importorskip("imagecodecs")
    ds = _encapsulated(IMG8, 8, ic.jpeg8_encode(IMG8, level=95), U.JPEGBaseline8Bit)
    max_err, mean_err = _err(_roundtrip(ds, tmp_path), IMG8)
    # tolerance for quality 95: max 6 % (16 levels), mean 1 % of the 8-bit range
    assert max_err <= 16 and mean_err <= 2.55


def test_jpeg_extended_12bit(tmp_path):
    ic = pytest.importorskip("imagecodecs")
    frame = ic.jpeg8_encode(IMG12, level=95, bitspersample=12)
    assert b"\xff\xc1" in frame                     # SOF1: extended sequential, process 2 & 4
    ds = _encapsulated(IMG12, 12, frame, U.JPEGExtended12Bit)
    max_err, mean_err = _err(_roundtrip(ds, tmp_path), IMG12)
    assert max_err <= 0.02 * 4095 and mean_err <= 0.005 * 4095


def test_jpeg_lossless_sv1(tmp_path):
    ic = pytest.importorskip("imagecodecs")
    frame = ic.jpeg8_encode(IMG12, lossless=True, predictor=1, bitspersample=12)
    sos = frame.index(b"\xff\xda")
    assert b"\xff\xc3" in frame and frame[sos + 7] == 1        # SOF3 (process 14), predictor 1
    ds = _encapsulated(IMG12, 12, frame, U.JPEGLosslessSV1)
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


def test_jpeg_lossless_any_predictor(tmp_path):
    ic = pytest.importorskip("imagecodecs")
    frame = ic.jpeg8_encode(IMG12, lossless=True, predictor=6, bitspersample=12)
    ds = _encapsulated(IMG12, 12, frame, U.JPEGLossless)      # process 14, any selection value
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


def _cod_progression(codestream: bytes) -> int:
    """The progression order byte of a JPEG 2000 COD marker (0 LRCP, 1 RLCP, 2 RPCL, ...)."""
    return codestream[codestream.index(b"\xff\x52") + 5]


def test_htj2k_lossless(tmp_path):
    ic = pytest.importorskip("imagecodecs")
    ds = _encapsulated(IMG12, 12, ic.htj2k_encode(IMG12, reversible=True), U.HTJ2KLossless)
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)


def test_htj2k_lossless_rpcl(tmp_path):
    ic = pytest.importorskip("imagecodecs")
    frame = ic.htj2k_encode(IMG12, reversible=True, tlm=True)
    # the RPCL syntax requires RPCL progression and TLM markers: OpenJPH writes both
    assert _cod_progression(frame) == 2 and b"\xff\x55" in frame
    ds = _encapsulated(IMG12, 12, frame, U.HTJ2KLosslessRPCL)
    assert np.array_equal(_roundtrip(ds, tmp_path), IMG12)
