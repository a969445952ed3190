"""Phantom DICOM radiographs carrying made-up identifiers in every attribute the de-identification
profile handles, for tests and benchmarks to hunt for in the outputs (nothing here is real PHI).

Every identifying value is distinct and recognisable (``PHI7-NAME``, a date of 1937, a UID under
``1.2.826.0.1.3680043.10.1``...), so a search of the output bytes for :func:`identifiers` proves
that none survived.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

UID_ROOT = "1.2.826.0.1.3680043.10.1"
# keyword -> value template ({p}: patient number, {f}: file number); strings searched for verbatim
TEXT = {
    "PatientName": "PHI{p}^NAME^GIVEN", "PatientID": "PHI{p}-MRN", "PatientBirthDate": "1937{p:02d}11",
    "PatientBirthTime": "0713{p:02d}", "OtherPatientIDs": "PHI{p}-OTHERID", "OtherPatientNames": "PHI{p}^OTHERNAME",
    "PatientBirthName": "PHI{p}^BIRTHNAME", "PatientMotherBirthName": "PHI{p}^MOTHER",
    "PatientAddress": "PHI{p} STREET 9, TOWNVILLE", "PatientTelephoneNumbers": "555-01{p:02d}",
    "MedicalRecordLocator": "PHI{p}-LOCATOR", "PatientComments": "PHI{p}-COMMENT", "Occupation": "PHI{p}-JOB",
    "AdditionalPatientHistory": "PHI{p}-HISTORY", "PatientAge": "0{p:02d}Y", "PatientSize": "1.{p:02d}7",
    "PatientWeight": "1{p}3.7", "IssuerOfPatientID": "PHI{p}-ISSUER", "AccessionNumber": "PHIACC{p}{f:03d}",
    "StudyID": "PHISID{f:03d}", "StudyDate": "1999{p:02d}21", "SeriesDate": "1999{p:02d}22",
    "AcquisitionDate": "1999{p:02d}23", "ContentDate": "1999{p:02d}24", "StudyTime": "1133{p:02d}",
    "SeriesTime": "1134{p:02d}", "AcquisitionTime": "1135{p:02d}", "ContentTime": "1136{p:02d}",
    "AcquisitionDateTime": "19990{p}25113700", "InstitutionName": "PHI{p} GENERAL HOSPITAL",
    "InstitutionAddress": "PHI{p} HOSPITAL ROAD", "InstitutionalDepartmentName": "PHI{p}-RADIOLOGY",
    "ReferringPhysicianName": "PHI{p}^REFERRER", "ReferringPhysicianAddress": "PHI{p} REFERRER LANE",
    "ReferringPhysicianTelephoneNumbers": "555-02{p:02d}", "PerformingPhysicianName": "PHI{p}^PERFORMER",
    "NameOfPhysiciansReadingStudy": "PHI{p}^READER", "PhysiciansOfRecord": "PHI{p}^RECORD",
    "OperatorsName": "PHI{p}^OPERATOR", "RequestingPhysician": "PHI{p}^REQUESTER",
    "StationName": "PHI{p}-STATION", "DeviceSerialNumber": "PHI{p}-SERIAL", "StudyDescription": "PHI{p}-STUDYDESC",
    "SeriesDescription": "PHI{p}-SERIESDESC", "ImageComments": "PHI{p}-IMAGECOMMENT",
    "RequestedProcedureID": "PHI{p}-RPID", "PerformedProcedureStepID": "PHI{p}-PPSID",
}
UIDS = {"StudyInstanceUID": "{root}.{p}.1", "SeriesInstanceUID": "{root}.{p}.2.{f}",
        "SOPInstanceUID": "{root}.{p}.3.{f}", "FrameOfReferenceUID": "{root}.{p}.4.{f}"}
PRIVATE = "PHI{p}-PRIVATE-VALUE"


def identifiers(patient: int, index: int) -> list[str]:
    """Every identifying string written into file ``index`` of ``patient`` (the private value and
    the referenced UID included)."""
    values = [t.format(p=patient, f=index) for t in TEXT.values()]
    values += [t.format(root=UID_ROOT, p=patient, f=index) for t in UIDS.values()]
    return values + [PRIVATE.format(p=patient), f"{UID_ROOT}.{patient}.9.{index}"]


def identified_dataset(patient: int, index: int, pixels: np.ndarray | None = None, photometric="MONOCHROME2",
                       syntax: str = "ExplicitVRLittleEndian"):
    """A DX dataset (12 bits stored) with made-up identifiers everywhere; ``pixels`` default to a
    small phantom chest."""
    import pydicom.uid as uids
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    if pixels is None:
        y, x = np.mgrid[:48, :40]
        lungs = np.exp(-(((x - 12) / 7.0) ** 2 + ((y - 24) / 14.0) ** 2)) + np.exp(
            -(((x - 28) / 7.0) ** 2 + ((y - 24) / 14.0) ** 2))
        pixels = np.round(3500 - 2600 * lungs).astype(np.uint16)         # MONOCHROME2: bone bright
        if photometric == "MONOCHROME1":
            pixels = (4095 - pixels).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    for keyword, template in UIDS.items():
        setattr(ds, keyword, template.format(root=UID_ROOT, p=patient, f=index))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, template in TEXT.items():
        setattr(ds, keyword, template.format(p=patient, f=index))
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = f"{UID_ROOT}.{patient}.9.{index}"
    ds.ReferencedStudySequence = Sequence([ref])
    ds.private_block(0x0011, "PHI PRIVATE CREATOR", create=True).add_new(0x01, "LO", PRIVATE.format(p=patient))
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.PatientSex = "DX", "CHEST", "PA", "F"
    ds.Manufacturer = "Phantom Imaging"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.139, 0.139]
    ds.WindowCenter, ds.WindowWidth = 2048, 4000
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if syntax != "ExplicitVRLittleEndian":
        ds.compress(getattr(uids, syntax), pixels.astype(np.uint16), generate_instance_uid=False)
    return ds


def write_identified(path, patient: int, index: int, **kwargs) -> Path:
    """Write :func:`identified_dataset` to ``path`` (with preamble and file meta)."""
    buf = io.BytesIO()
    identified_dataset(patient, index, **kwargs).save_as(buf, enforce_file_format=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path
