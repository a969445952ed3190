"""DICOM display conversion: windowing, MONOCHROME1 inversion (bone stays bright), files without
a file meta header, compressed transfer syntaxes, and clear errors."""

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from cxr_tf.core.errors import CxrImageError  # noqa: E402
from cxr_tf.imaging import decode_file  # noqa: E402
from cxr_tf.dicom.display import read_dicom  # noqa: E402


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


# --- the display pipeline, step by step ---------------------------------------------------------

from pydicom.sequence import Sequence  # noqa: E402

from cxr_tf.dicom.display import equalize_hist, read_header  # noqa: E402

RAMP = np.arange(4096, dtype=np.uint16).reshape(64, 64)     # every 12-bit value once


def _ds(pixels=RAMP, photometric="MONOCHROME2", **attrs):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    ds.Modality = "CR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(pixels, photometric, 12 if pixels.dtype == np.uint16 else 8)
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _read(tmp_path, ds, **options):
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return read_dicom(path, **options)


def test_rescale_slope_intercept_before_the_window(tmp_path):
    # modality value = 2 * stored - 1000; a 2-wide window at 1000 splits at modality 1000 = stored 1000
    out, info = _read(tmp_path, _ds(RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=2))
    flat = RAMP.ravel()
    assert info["voi"] == "header" and info["windowed"]
    assert (out.ravel()[flat < 1000] == 0).all() and (out.ravel()[flat > 1000] == 255).all()


def test_modality_lut_sequence(tmp_path):
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])      # LUT Descriptor
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", [4095 - i for i in range(4096)])    # LUT Data: reverses the values
    out, _ = _read(tmp_path, _ds(ModalityLUTSequence=Sequence([item])), voi="full")
    assert out.ravel()[0] == 255 and out.ravel()[-1] == 0


def _voi_lut_item(step_at: int) -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 12])
    item.add_new(0x00283006, "US", [0 if i < step_at else 4095 for i in range(4096)])
    return item


def test_voi_lut_sequence_preferred_over_the_header_window(tmp_path):
    ds = _ds(WindowCenter=3000, WindowWidth=2, VOILUTSequence=Sequence([_voi_lut_item(500)]))
    out, info = _read(tmp_path, ds)
    assert info["voi"] == "sequence" and info["windowed"]
    flat = out.ravel()
    assert (flat[:500] == 0).all() and (flat[500:] == 255).all()
    header, info = _read(tmp_path, ds, voi="header")       # forced: the window, not the LUT
    assert info["voi"] == "header" and (header.ravel()[:2999] == 0).all()


def test_header_window_sigmoid(tmp_path):
    out, info = _read(tmp_path, _ds(WindowCenter=2048, WindowWidth=1024, VOILUTFunction="SIGMOID"))
    flat = out.ravel()
    assert info["voi"] == "header" and abs(int(flat[2048]) - 128) <= 1
    assert flat[0] < 5 and flat[-1] > 250 and (np.diff(flat.astype(int)) >= 0).all()


def test_full_range(tmp_path):
    out, info = _read(tmp_path, _ds(pixels=(RAMP // 2 + 100).astype(np.uint16), WindowCenter=1, WindowWidth=2),
                      voi="full")
    assert info["voi"] == "full" and not info["windowed"]
    assert out.min() == 0 and out.max() == 255 and abs(int(out.ravel()[2048]) - 128) <= 1


def test_auto_without_window_is_full_range(tmp_path):
    _, info = _read(tmp_path, _ds())
    assert info["voi"] == "full"


def test_percentile(tmp_path):
    out, info = _read(tmp_path, _ds(), voi="percentile", percentiles=(10, 90))
    flat = out.ravel()
    assert info["voi"] == "percentile"
    assert (flat[: 409] == 0).all() and (flat[-409:] == 255).all() and 0 < flat[2048] < 255


def test_presentation_lut_shape_inverse(tmp_path):
    plain, _ = _read(tmp_path, _ds())
    inverse, info = _read(tmp_path, _ds(PresentationLUTShape="INVERSE"))
    assert info["inverted"] and np.abs(inverse.astype(int) - (255 - plain.astype(int))).max() <= 1
    # MONOCHROME1 declared INVERSE (as DX images do) is inverted once, not twice
    mono1, _ = _read(tmp_path, _ds(photometric="MONOCHROME1"))
    both, _ = _read(tmp_path, _ds(photometric="MONOCHROME1", PresentationLUTShape="INVERSE"))
    assert np.array_equal(mono1, both) and mono1.ravel()[0] == 255
    identity, info = _read(tmp_path, _ds(PresentationLUTShape="IDENTITY"))
    assert np.array_equal(identity, plain) and not info["inverted"]


def test_16_bit_output(tmp_path):
    out, _ = _read(tmp_path, _ds(), bits=16)
    assert out.dtype == np.uint16 and out.min() == 0 and out.max() == 65535
    assert len(np.unique(out)) == 4096          # no 8-bit quantization
    eight, _ = _read(tmp_path, _ds(), bits=8)
    assert np.abs(out.astype(int) / 257 - eight).max() <= 1


def test_equalize_option(tmp_path):
    skewed = (np.sqrt(RAMP.astype(float) / 4095) ** 6 * 4095).astype(np.uint16)
    plain, _ = _read(tmp_path, _ds(pixels=skewed))
    eq, _ = _read(tmp_path, _ds(pixels=skewed), equalize=True)
    assert np.array_equal(eq, equalize_hist(plain))


@pytest.mark.parametrize("seed", range(6))
def test_equalize_hist_matches_opencv(seed):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(seed)
    shape = [(64, 64), (37, 91), (512, 300), (1, 1), (5, 7), (256, 256)][seed]
    kinds = [lambda: rng.integers(0, 256, shape), lambda: rng.normal(90, 20, shape),
             lambda: rng.integers(40, 60, shape), lambda: np.full(shape, 17),
             lambda: rng.choice([3, 200], shape), lambda: rng.exponential(30, shape)]
    img = np.clip(kinds[seed](), 0, 255).astype(np.uint8)
    assert np.array_equal(equalize_hist(img), cv2.equalizeHist(img))


def test_equalize_hist_refuses_16_bit():
    with pytest.raises(ValueError, match="uint8"):
        equalize_hist(np.zeros((4, 4), np.uint16))


def test_mimic_jpg_recipe(tmp_path):
    cv2 = pytest.importorskip("cv2")
    stored = (4095 - RAMP).astype(np.uint16)
    out, info = _read(tmp_path, _ds(pixels=stored, photometric="MONOCHROME1", WindowCenter=5, WindowWidth=2),
                      recipe="mimic-jpg")
    assert info["voi"] == "recipe" and not info["windowed"] and out.dtype == np.uint8
    expected = (stored.astype(np.float64) / 4095 * 255).astype(np.uint8)
    assert np.array_equal(out, cv2.equalizeHist(255 - expected))
    again, _ = _read(tmp_path, _ds(pixels=stored, photometric="MONOCHROME1"), recipe="mimic-jpg")
    assert np.array_equal(out, again)       # deterministic; no header LUT involved


# --- the real files -----------------------------------------------------------------------------

REAL = ["CR-MONO1-10-chest.dcm", "RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm"]


def _mediastinum_vs_lungs(img):
    h, w = img.shape
    rows = slice(h // 3, 2 * h // 3)
    centre = img[rows, w // 2 - w // 20: w // 2 + w // 20].mean()
    lungs = (img[rows, : w // 3].mean() + img[rows, 2 * w // 3:].mean()) / 2
    return centre, lungs


@pytest.mark.parametrize("name", REAL)
def test_real_mediastinum_brighter_than_lungs(shared_dir, name):
    img, info = read_dicom(shared_dir / "dicom" / name)
    centre, lungs = _mediastinum_vs_lungs(img)
    assert centre > lungs + 10, (centre, lungs)
    assert info["view"] == "PA" and info["rows"] == img.shape[0] and info["columns"] == img.shape[1]
    assert info["inverted"] == (info["photometric"] == "MONOCHROME1")


@pytest.mark.parametrize("name", REAL)
def test_flipping_photometric_inverts(shared_dir, name, tmp_path):
    import io as _io
    src = shared_dir / "dicom" / name
    img, info = read_dicom(src)
    ds = pydicom.dcmread(src, force=True)
    ds.PhotometricInterpretation = "MONOCHROME2" if info["photometric"] == "MONOCHROME1" else "MONOCHROME1"
    buf = _io.BytesIO()
    ds.save_as(buf)
    flipped, _ = read_dicom(tmp_path / name, buf.getvalue())
    assert np.abs(flipped.astype(int) - (255 - img.astype(int))).max() <= 1
    centre, lungs = _mediastinum_vs_lungs(flipped)
    assert centre < lungs


@pytest.mark.parametrize("name", REAL)
def test_real_mimic_recipe_bone_bright(shared_dir, name):
    img, info = read_dicom(shared_dir / "dicom" / name, recipe="mimic-jpg")
    centre, lungs = _mediastinum_vs_lungs(img)
    assert info["voi"] == "recipe" and centre > lungs + 10


def test_read_header(shared_dir):
    head = read_header(shared_dir / "dicom" / "CR-MONO1-10-chest.dcm")
    assert head["view"] == "PA" and head["photometric"] == "MONOCHROME1" and head["rows"] == "440"
    assert head["transfer_syntax"] == "1.2.840.10008.1.2" and "patient_id" in head
    assert read_header(shared_dir / "dicom" / "RG1_J2KI.dcm")["transfer_syntax"] == "1.2.840.10008.1.2.4.91"


def test_read_header_not_dicom(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not DICOM at all\n" * 20)
    with pytest.raises(CxrImageError, match="notes.txt.*not a DICOM"):
        read_header(path)


# --- refusals, each naming the file --------------------------------------------------------------

def test_structured_report_refused(tmp_path):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", generate_uid()   # Basic Text SR
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(CxrImageError, match="report.dcm.*no image.*Basic Text SR"):
        read_dicom(path)


def test_multi_frame_refused(tmp_path):
    ds = _ds()
    ds.set_pixel_data(np.zeros((3, 8, 8), np.uint16), "MONOCHROME2", 12)
    with pytest.raises(CxrImageError, match=r"multi-frame.*3 frames"):
        _read(tmp_path, ds)


def test_colour_refused(tmp_path):
    ds = _ds()
    ds.set_pixel_data(np.zeros((8, 8, 3), np.uint8), "RGB", 8)
    with pytest.raises(CxrImageError, match="colour"):
        _read(tmp_path, ds)


@pytest.mark.parametrize("keep", [0.5, 0.05, 0.003])
def test_truncated_refused(shared_dir, tmp_path, keep):
    data = (shared_dir / "dicom" / "siim_cr_jpeg_baseline.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CxrImageError, match="cut.dcm.*truncated"):
        read_dicom(path)


def test_png_named_dcm_refused(tmp_path):
    import io as _io

    from PIL import Image
    buf = _io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")
    path = tmp_path / "image.dcm"
    path.write_bytes(buf.getvalue())
    with pytest.raises(CxrImageError, match="image.dcm.*not a DICOM"):
        read_dicom(path)


def test_missing_decoder_plugin_named(shared_dir, monkeypatch):
    from pydicom.pixels.decoders.base import Decoder
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(CxrImageError, match="RG1_J2KI.dcm.*pip install pylibjpeg-openjpeg"):
        read_dicom(shared_dir / "dicom" / "RG1_J2KI.dcm")
