"""De-identification (DICOM PS3.15 basic profile via dicom-anonymizer's table, keyed HMAC
pseudonyms): no identifier survives in the written bytes, pseudonyms are stable per salt and differ
across salts, UIDs stay valid and keep study/series links, sequences survive."""

import io

import numpy as np
import pytest

pytest.importorskip("pydicom")
pytest.importorskip("dicomanonymizer")
from pydicom import dcmread  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import UID  # noqa: E402

from cxr_tf.dicom.deid import PROFILE, Pseudonyms, deidentify, profile_name  # noqa: E402
from cxr_tf.synth.phi import UID_ROOT, identified_dataset, identifiers  # noqa: E402

EXTRA = {   # identifiers in nested sequences, beyond the phantom's flat attributes
    "ref_image_uid": f"{UID_ROOT}.77.1", "request_accession": "PHIX-REQACC",
    "request_rpid": "PHIX-REQ-RPID", "other_pid_seq": "PHIX-OTHERPID-SEQ", "content_name": "PHIX^CONTENT^NAME",
}


def _dataset(patient=1, index=0, **kw):
    ds = identified_dataset(patient, index, **kw)
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ref.ReferencedSOPInstanceUID = EXTRA["ref_image_uid"]
    ds.ReferencedImageSequence = Sequence([ref])
    req = Dataset()
    req.AccessionNumber, req.RequestedProcedureID = EXTRA["request_accession"], EXTRA["request_rpid"]
    ds.RequestAttributesSequence = Sequence([req])
    other = Dataset()
    other.PatientID = EXTRA["other_pid_seq"]
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.ContentSequence = Sequence([Dataset()])
    ds.ContentSequence[0].PersonName = EXTRA["content_name"]
    return ds


def _bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _secrets(patient=1, index=0):
    return identifiers(patient, index) + list(EXTRA.values())


def test_no_identifier_in_the_written_file():
    ds = _dataset()
    pixels = ds.PixelData
    deidentify(ds, Pseudonyms("salt-a"))
    blob = _bytes(ds)
    assert [s for s in _secrets() if s.encode() in blob] == []
    assert b"PHI PRIVATE CREATOR" not in blob                      # private tags dropped
    back = dcmread(io.BytesIO(blob))
    assert back.PatientIdentityRemoved == "YES" and back.DeidentificationMethod.startswith(PROFILE[:40])
    assert back.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert back.PixelData == pixels and back.ViewPosition == "PA" and back.Modality == "DX"
    assert "keyed HMAC" in profile_name() and "dicom-anonymizer 2.1" in profile_name()


def test_identified_fixture_really_carries_the_identifiers():
    blob = _bytes(_dataset())
    assert [s for s in _secrets() if s.encode() not in blob] == []


def test_uids_valid_consistent_and_keep_links():
    pseudo = Pseudonyms("salt-a")
    a, b = _dataset(1, 0), _dataset(1, 1)          # same patient and study, two series
    deidentify(a, pseudo)
    deidentify(b, Pseudonyms("salt-a"))            # another object, same salt: same mapping
    for ds in (a, b):
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            uid = UID(ds[kw].value)
            assert uid.startswith("2.25.") and uid.is_valid and len(uid) <= 64
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID != b.SeriesInstanceUID
    assert a.PatientID == b.PatientID and a.PatientID.startswith("P-")
    ref = a.ReferencedImageSequence[0]      # sequence items survive, UIDs keyed, class UIDs kept
    assert ref.ReferencedSOPInstanceUID == pseudo.uid(EXTRA["ref_image_uid"])
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"


def test_same_salt_same_output_other_salt_other_pseudonyms():
    runs = []
    for salt in ("salt-a", "salt-a", "salt-b"):
        ds = _dataset()
        deidentify(ds, Pseudonyms(salt))
        runs.append(ds)
    assert _bytes(runs[0]) == _bytes(runs[1])       # deterministic: no random UID anywhere
    for kw in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert runs[0][kw].value != runs[2][kw].value
    other_patient = _dataset(2, 0)
    deidentify(other_patient, Pseudonyms("salt-a"))
    assert other_patient.PatientID != runs[0].PatientID


def test_pseudonyms_are_keyed_hmacs():
    import hashlib
    import hmac
    pseudo = Pseudonyms("k")
    digest = hmac.new(b"k", b"uid:1.2.3", hashlib.sha256).digest()
    assert pseudo.uid("1.2.3") == f"2.25.{int.from_bytes(digest[:16], 'big')}"
    assert Pseudonyms("k").patient("X") == pseudo.patient("X") != Pseudonyms("k2").patient("X")


def test_random_salt_when_none_given(caplog):
    a, b = Pseudonyms(None), Pseudonyms(None)
    assert a.random_salt and b.random_salt and a.patient("X") != b.patient("X")
    assert "random" in caplog.text
    assert not Pseudonyms("s").random_salt


def test_compressed_dataset_deidentified_pixels_kept():
    ds = _dataset(syntax="RLELossless")
    before = ds.pixel_array.copy()
    deidentify(ds, Pseudonyms("s"))
    back = dcmread(io.BytesIO(_bytes(ds)))
    assert np.array_equal(back.pixel_array, before)
