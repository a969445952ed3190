"""DICOM display conversion: windowing, MONOCHROME1 inversion (bone stays bright), files without
a file meta header, compressed transfer syntaxes, and clear errors."""

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from cxr_tf.errors import CxrImageError  # noqa: E402
from cxr_tf.imaging import decode_file  # noqa: E402
from cxr_tf.imaging.dicom import read_dicom  # noqa: E402


def write_dicom(path, pixels, photometric="MONOCHROME2", window=None, meta=True):
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID = "CR", "ANON"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


BONE = np.zeros((16, 16), np.uint16)
BONE[4:12, 4:12] = 4000     # dense region: high stored value in MONOCHROME2


def test_monochrome2_bone_is_bright(tmp_path):
    out, info = read_dicom(write_dicom(tmp_path / "a.dcm", BONE))
    assert out.dtype == np.uint8 and out[8, 8] == 255 and out[0, 0] == 0
    assert info["photometric"] == "MONOCHROME2"


def test_monochrome1_is_inverted(tmp_path):
    # MONOCHROME1: low stored values are white, so bone is stored low
    stored = (4000 - BONE).astype(np.uint16)
    out, _ = read_dicom(write_dicom(tmp_path / "b.dcm", stored, "MONOCHROME1"))
    assert out[8, 8] == 255 and out[0, 0] == 0


def test_window_from_header(tmp_path):
    ramp = np.tile(np.arange(0, 4096, 256, dtype=np.uint16), (16, 1))
    out, info = read_dicom(write_dicom(tmp_path / "w.dcm", ramp, window=(1024, 512)))
    assert info["windowed"]
    assert out[0, 0] == 0 and out[0, -1] == 255 and len(np.unique(out)) < len(np.unique(ramp))


def test_no_file_meta_header(tmp_path):
    path = write_dicom(tmp_path / "raw.dcm", BONE, meta=False)
    assert path.read_bytes()[128:132] != b"DICM"
    assert decode_file(path)[8, 8] == 255       # dispatched by the .dcm name


def test_not_dicom_names_file(tmp_path):
    path = tmp_path / "bad.dcm"
    path.write_bytes(b"\x00" * 300)
    with pytest.raises(CxrImageError, match="bad.dcm"):
        decode_file(path)


@pytest.mark.parametrize("name,shape", [("CR-MONO1-10-chest.dcm", (440, 440)), ("RG1_J2KI.dcm", (1955, 1841)),
                                        ("siim_cr_jpeg_baseline.dcm", (1024, 1024))])
def test_real_dicom_bone_bright(shared_dir, name, shape):
    img = decode_file(shared_dir / "dicom" / name)
    assert img.shape == shape and img.dtype == np.uint8
    h, w = img.shape
    spine = img[h // 3: 2 * h // 3, w // 2 - w // 40: w // 2 + w // 40].mean()
    lungs = np.mean([img[h // 3: 2 * h // 3, w // 4 - w // 20: w // 4 + w // 20].mean(),
                     img[h // 3: 2 * h // 3, 3 * w // 4 - w // 20: 3 * w // 4 + w // 20].mean()])
    assert spine > lungs + 10, (spine, lungs)     # mediastinum/spine brighter than lung fields
