"""The phantom MIMIC releases: valid DICOM in several transfer syntaxes with MONOCHROME1 files,
windows and made-up identifiers; reports in the real style that say what the labels say; and
output that is the same for a seed whatever the number of workers."""

import gzip
import hashlib
import zipfile

import numpy as np
import pandas as pd
import pytest

from cxr_tf.core import cards
from cxr_tf.datasets.mimic import phantom as synth
from cxr_tf.synth.reports import PHRASES

pydicom = pytest.importorskip("pydicom")
LAYOUT = cards.dataset_card("mimic")["layout"]


def _records(root):
    with gzip.open(root / f"{LAYOUT['record_list']}.gz", "rt") as fh:
        return pd.read_csv(fh, dtype=str)


def test_dicom_release_is_valid_dicom_with_variety(mimic_dirs):
    root = mimic_dirs["dicom"]
    records = _records(root)
    assert list(records.columns) == ["subject_id", "study_id", "dicom_id", "path"]
    syntaxes, photometric, windows = set(), set(), 0
    for row in records.itertuples():
        ds = pydicom.dcmread(root / row.path)
        assert ds.file_meta.TransferSyntaxUID and ds.PatientID == row.subject_id
        assert ds.SOPInstanceUID.startswith("2.25.") or ds.SOPInstanceUID.startswith("1.2.826.0.1.3680043")
        syntaxes.add(ds.file_meta.TransferSyntaxUID.name)
        photometric.add(ds.PhotometricInterpretation)
        windows += "WindowCenter" in ds
        assert ds.PatientName and ds.InstitutionName and ds.AccessionNumber and ds.PatientBirthDate
        assert any(el.tag.is_private for el in ds)
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns) and ds.BitsStored == 12
    assert {"Explicit VR Little Endian", "RLE Lossless"} <= syntaxes and any("2000" in s for s in syntaxes)
    assert photometric == {"MONOCHROME1", "MONOCHROME2"} and 0 < windows < len(records)
    study_list = pd.read_csv(root / f"{LAYOUT['study_list']}.gz", dtype=str)
    assert set(study_list["study_id"]) == set(records["study_id"])


def test_reports_say_what_the_labels_say(mimic_dirs):
    labels = pd.read_csv(mimic_dirs["jpg"] / f"{LAYOUT['labels']['chexpert']}.gz", dtype=str,
                         keep_default_na=False).set_index("study_id")
    with zipfile.ZipFile(mimic_dirs["dicom"] / LAYOUT["reports_zip"]) as zf:
        names = zf.namelist()
        assert all(n.startswith("files/p1") and n.endswith(".txt") for n in names)
        for name in names:
            study = name.rsplit("/s", 1)[1][:-4]
            text = zf.read(name).decode()
            assert text.splitlines()[0].strip() == "FINAL REPORT"
            text = " ".join(text.split("FINDINGS:", 1)[1].split()).lower()     # findings and impression
            row = labels.loc[study]
            for finding, phrases in PHRASES.items():
                stated, hedged, denied = (" ".join(x.split()).lower() for x in phrases)
                state = row[finding]
                if state == "1.0":
                    assert stated in text, (study, finding)
                elif state == "0.0":
                    assert denied in text, (study, finding)
                elif state == "-1.0":
                    assert hedged in text, (study, finding)
                else:
                    assert stated not in text and denied not in text and hedged not in text
    assert len(names) == labels.shape[0]


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("dicom", [False, True])
def test_deterministic_whatever_the_workers(tmp_path, dicom):
    a = synth.write_dataset(tmp_path / "a", n_images=16, n_patients=4, size=32, seed=2, workers=1, dicom=dicom)
    b = synth.write_dataset(tmp_path / "b", n_images=16, n_patients=4, size=32, seed=2, workers=2, dicom=dicom)
    assert a == b and _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_jpg_is_the_mimic_jpg_conversion_of_the_dicom(mimic_dirs):
    from cxr_tf.imaging import decode_file
    records = _records(mimic_dirs["dicom"]).head(6)
    for row in records.itertuples():
        dcm = decode_file(mimic_dirs["dicom"] / row.path, recipe="mimic-jpg").astype(int)
        jpg = decode_file(mimic_dirs["jpg"] / (row.path[:-4] + ".jpg")).astype(int)
        assert np.abs(dcm - jpg).mean() < 3.0
        assert dcm.min() == 0 and dcm.max() == 255          # equalized to the full range
