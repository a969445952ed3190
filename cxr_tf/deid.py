"""De-identification of DICOM datasets: the DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile, with keyed pseudonyms (no TensorFlow here).

The profile's table (Table E.1-1: which attribute is removed, emptied, replaced or has its UID
replaced) is not written here: it is Kitware's ``dicom-anonymizer`` (the ``dicomfields_2026c``
table it transcribes from the standard, 620 attribute rules), applied with its
``anonymize_dataset``. On top of it this module replaces, consistently and irreversibly:

* every UID the table marks U (Study, Series, SOP Instance, Frame of Reference, referenced UIDs...)
  by ``2.25.<HMAC-SHA256(salt, uid) as a 128-bit integer>``: the same UID maps to the same
  pseudonym in every file and run with the same salt, so studies and series stay linked;
* Patient ID (and Patient's Name) by ``P-<HMAC-SHA256(salt, patient id), 20 hex digits>``.

Private tags are dropped, Patient Identity Removed is set to YES, De-identification Method and its
code sequence (113100, Basic Application Confidentiality Profile) are recorded. Without the salt
nobody can recompute or reverse a pseudonym; with another salt every pseudonym differs.

Why dicom-anonymizer (measured here on 40 files, each carrying made-up identifiers in 47
attributes, see ``benchmarks/dicom.py --compare-deid``): it follows the standard's own table
version by version, exposes one action per attribute so the UID and patient-ID actions can be
keyed, needs only pydicom and tqdm, and left none of the identifiers behind. dicognito replaces
values with plausible fakes from its own seeded randomizer (not a keyed HMAC we could state), and
deid applies its own recipe file rather than the PS3.15 table.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import logging
import secrets

log = logging.getLogger(__name__)
TABLE = "dicomfields_2026c"
PROFILE = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
METHOD = f"{PROFILE}; dicom-anonymizer {TABLE} table; UIDs and Patient ID by HMAC-SHA256 (cxr-tf)"


def profile_name() -> str:
    """What :func:`deidentify` applies, for the output's profile column."""
    from importlib.metadata import version
    try:
        return f"{PROFILE} (dicom-anonymizer {version('dicom-anonymizer')}, table {TABLE}; keyed HMAC pseudonyms)"
    except Exception:       # pragma: no cover - an uninstalled checkout
        return f"{PROFILE} (dicom-anonymizer, table {TABLE}; keyed HMAC pseudonyms)"


class Pseudonyms:
    """Keyed, irreversible pseudonyms: the same input and salt give the same output everywhere."""

    def __init__(self, salt: str | bytes | None = None):
        self.random_salt = salt is None
        if salt is None:
            salt = secrets.token_bytes(32)
            log.warning("no salt given: a random one is used, so pseudonyms will not match another run's")
        self._key = salt.encode() if isinstance(salt, str) else bytes(salt)

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}:{value.strip()}".encode(), hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """A UID -> ``2.25.<128-bit integer>`` (at most 44 characters, a valid UID)."""
        return f"2.25.{int.from_bytes(self._digest('uid', str(value))[:16], 'big')}"

    def patient(self, value: str) -> str:
        """A patient ID -> ``P-`` and 20 hex digits."""
        return "P-" + self._digest("patient", str(value)).hex()[:20]

    def token(self, value: str) -> str:
        """Any other string (e.g. an input file path) -> 16 hex digits."""
        return self._digest("token", str(value)).hex()[:16]


def _rules(pseudonyms: Pseudonyms) -> dict:
    """The table's rules with the UID and patient-ID actions keyed by ``pseudonyms``."""
    from dicomanonymizer import simpledicomanonymizer as sda
    from pydicom.multival import MultiValue

    table = sda.dicom_anonymization_database_selector(TABLE)

    def replace_uid(dataset, tag):
        element = dataset.get(tag)
        if element is None or element.value in (None, ""):
            return
        if isinstance(element.value, MultiValue):
            element.value = [pseudonyms.uid(v) for v in element.value]
        else:
            element.value = pseudonyms.uid(element.value)

    def replace_patient(dataset, tag):
        element = dataset.get(tag)
        if element is not None and element.value not in (None, ""):
            element.value = pseudonyms.patient(str(element.value))

    rules = sda.initialize_actions(TABLE)
    for tag in [*table["U_TAGS"], *table["X_Z_U_STAR_TAGS"]]:
        if len(tag) == 2:
            rules[tag] = replace_uid
    rules[(0x0010, 0x0020)] = replace_patient       # Patient ID
    return rules


def deidentify(ds, pseudonyms: Pseudonyms):
    """De-identify ``ds`` in place (file meta included) and return it; the patient pseudonym is
    computed from the Patient ID before anything is removed and written to Patient ID and Name."""
    from dicomanonymizer import simpledicomanonymizer as sda

    patient = pseudonyms.patient(str(ds.get("PatientID", "") or ""))
    with contextlib.redirect_stdout(io.StringIO()):      # the library prints about absent tags
        sda.anonymize_dataset(ds, extra_anonymization_rules=_rules(pseudonyms), delete_private_tags=True)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta:
            sop = ds.get("SOPInstanceUID")
            meta.MediaStorageSOPInstanceUID = sop or pseudonyms.uid(meta.MediaStorageSOPInstanceUID)
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformation", "PrivateInformationCreatorUID"):
            if keyword in meta:
                delattr(meta, keyword)
    ds.PatientID = patient
    ds.PatientName = patient
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD[:64]
    _method_code(ds)
    return ds


def _method_code(ds) -> None:
    """De-identification Method Code Sequence: DCM 113100, Basic Application Confidentiality Profile."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "113100", "DCM"
    item.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([item])
