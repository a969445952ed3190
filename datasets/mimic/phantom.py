"""Write a phantom MIMIC-CXR-JPG or MIMIC-CXR (DICOM) release in the exact on-disk layouts.

Both releases come from one plan, so for a seed they hold the same patients, studies, images,
labels and reports; the DICOM release is the source of truth, and each JPG is what the
MIMIC-CXR-JPG conversion (:func:`cxr_tf.dicom.display.read_dicom` with ``recipe="mimic-jpg"``:
min-max to 8 bits, MONOCHROME1 inverted, histogram-equalized) makes of its DICOM, saved as JPEG
quality 95, as the real release was made.

* JPG release (``OUT/``): ``mimic-cxr-2.0.0-{metadata,chexpert,negbio,split}.csv.gz`` in the real
  headers, ``mimic-cxr-2.1.0-test-set-labeled.csv`` (radiologist labels of the test studies, keyed
  by ``study_id``, "Airspace Opacity"), ``IMAGE_FILENAMES`` and
  ``files/p1N/p1NNNNNNN/s5NNNNNNN/<dicom_id>.jpg``.
* DICOM release (``--dicom``): ``cxr-record-list.csv.gz``, ``cxr-study-list.csv.gz``,
  ``files/.../<dicom_id>.dcm`` (DX, 12 bits stored, some MONOCHROME1, some RLE Lossless or JPEG 2000
  Lossless, windows in most headers, blank ViewPosition on a few) and ``mimic-cxr-reports.zip``
  holding ``files/p1N/p1NNNNNNN/s5NNNNNNN.txt``.

IDs are realistic: subject_id 8 digits starting with 1, study_id 8 digits starting with 5,
dicom_id five dash-separated groups of 8 hex digits. Patients have several studies, studies a
frontal and often a lateral view. Labels follow the reports: a stated observation is 1.0, a hedged
one -1.0, a denied one 0.0, the rest blank (chexpert.csv); negbio.csv differs where NegBio misses
a hedge (blank). The DICOMs carry made-up identifiers (names, birth dates, accession numbers,
institution, physicians, a private tag) for de-identification tests to hunt for.
"""

from __future__ import annotations

import gzip
import io
import logging
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_tf.core import atomic, cards
from cxr_tf.core.parallel import imap
from cxr_tf.core.progress import progress
from cxr_tf.datasets.mimic.source import relative_path
from cxr_tf.datasets.chexpert import phantom as cx
from cxr_tf.synth.reports import report

log = logging.getLogger(__name__)
logging.getLogger("openjpeg").setLevel(logging.WARNING)    # its encoder logs every tile at INFO
METADATA_HEADER = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                   "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                   "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
SPLIT_OF = {"train": "train", "valid": "validate", "test": "test"}
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
SYNTAXES = ("ExplicitVRLittleEndian", "RLELossless", "JPEG2000Lossless")


@dataclass(frozen=True)
class ImagePlan:
    """One image: its DICOM id, view and how its DICOM is stored."""

    dicom_id: str
    view: str            # ViewPosition (may be blank, as on about 4 % of real rows)
    lateral: bool
    photometric: str
    syntax: str
    window: bool


@dataclass(frozen=True)
class StudyPlan:
    """One study of the phantom release."""

    study: cx.Study
    subject_id: str
    study_id: str
    date: str
    images: tuple


def plan(n_images: int, n_patients: int, seed: int) -> list[StudyPlan]:
    """Every study, with realistic IDs (deterministic for a seed); about ``n_images`` images."""
    studies = cx.plan(n_images, n_patients, seed, test_set=True, lateral=0.6)
    rng = np.random.default_rng([seed, 21])
    patients = sorted({s.patient for s in studies})
    subject = dict(zip(patients, (10000000 + rng.choice(9_999_999, len(patients), replace=False)).tolist()))
    study_ids = (50000000 + rng.choice(9_999_999, len(studies), replace=False)).tolist()
    out = []
    for st, study_id in zip(studies, study_ids):
        images = []
        views = [("AP" if st.projection == "AP" else "PA", False)]
        if st.lateral:
            views.append(("LL" if rng.random() < 0.15 else "LATERAL", True))
        for view, lateral in views:
            dicom_id = "-".join(f"{int(x):08x}" for x in rng.integers(0, 2 ** 32, 5))
            images.append(ImagePlan(dicom_id, "" if rng.random() < 0.05 else view, lateral,
                                    "MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2",
                                    str(rng.choice(SYNTAXES, p=[0.7, 0.15, 0.15])), bool(rng.random() < 0.8)))
        date = f"21{int(rng.integers(10, 99)):02d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        out.append(StudyPlan(st, str(subject[st.patient]), str(study_id), date, tuple(images)))
    if len(out) > 2 and not any(not im.view for sp in out for im in sp.images):
        first = out[1]      # a blank ViewPosition in every release, as in the real metadata
        out[1] = replace(first, images=(replace(first.images[0], view=""), *first.images[1:]))
    return out


def stored_pixels(display: np.ndarray, image: ImagePlan, rng: np.random.Generator) -> np.ndarray:
    """A display image -> 12-bit stored values as a detector would write them (inverted for
    MONOCHROME1, where low values are white)."""
    values = display.astype(np.float64) * (3500.0 / 255.0) + 300.0 + rng.normal(0.0, 6.0, display.shape)
    values = np.clip(np.round(values), 0, 4095).astype(np.uint16)
    return (4095 - values).astype(np.uint16) if image.photometric == "MONOCHROME1" else values


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def dicom_bytes(sp: StudyPlan, image: ImagePlan, stored: np.ndarray, seed: int) -> bytes:
    """The DICOM file of one image (made-up identifiers included) as bytes."""
    import pydicom.uid as uids
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(seed, "sop", image.dicom_id)
    ds.StudyInstanceUID = _uid(seed, "study", sp.study_id)
    ds.SeriesInstanceUID = _uid(seed, "series", sp.study_id, image.lateral)
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", image.view
    ds.PatientID = sp.subject_id
    ds.PatientName = f"Phantom^Patient{sp.subject_id}"
    ds.PatientBirthDate = f"20{sp.subject_id[-2:]}0101"
    ds.PatientSex = "M" if sp.study.sex == "Male" else "F"
    ds.OtherPatientIDs = f"MRN{sp.subject_id[::-1]}"
    ds.AccessionNumber = f"ACC{sp.study_id}"
    ds.StudyID = f"SID{sp.study_id[-5:]}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = sp.date
    ds.StudyTime = "101530"
    ds.InstitutionName = "Phantom General Hospital"
    ds.InstitutionAddress = "1 Phantom Way, Nowhere"
    ds.ReferringPhysicianName = "Referrer^Phantom"
    ds.OperatorsName = "Operator^Phantom"
    ds.StationName = "PHANTOM-DX1"
    ds.DeviceSerialNumber = f"SN{seed:04d}X"
    ds.Manufacturer = "Phantom Imaging"
    ds.private_block(0x0009, "PHANTOM PRIVATE", create=True).add_new(0x01, "LO", f"PRIVATE-{sp.subject_id}")
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, image.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.139, 0.139]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    if image.window:
        lo, hi = np.percentile(stored, [1, 99])
        ds.WindowCenter, ds.WindowWidth = f"{(lo + hi) / 2:.1f}", f"{max(hi - lo, 1):.1f}"
    ds.PixelData = stored.tobytes()
    if image.syntax != "ExplicitVRLittleEndian":
        ds.compress(getattr(uids, image.syntax), stored, generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _render(args) -> int:
    """Render one patient's studies into the release tree; returns the number of images."""
    plans, size, seed, root, dicom = args
    from cxr_tf.dicom.display import read_dicom

    by_study = {sp.study.study: sp for sp in plans}
    n = 0
    for st, frontal, lateral in cx.patient_studies([sp.study for sp in plans], size, seed):
        sp = by_study[st.study]
        for image in sp.images:
            pixels = lateral if image.lateral else frontal
            height = round(size * 1.2)      # portrait, as most MIMIC radiographs are
            pixels = np.asarray(Image.fromarray(pixels, mode="L").resize((size, height), Image.Resampling.BILINEAR))
            rng = np.random.default_rng([seed, 22, int(image.dicom_id[:8], 16)])
            data = dicom_bytes(sp, image, stored_pixels(pixels, image, rng), seed)
            rel = relative_path(sp.subject_id, sp.study_id, image.dicom_id, "dcm" if dicom else "jpg")
            with atomic.atomic_path(Path(root) / rel) as tmp:
                if dicom:
                    Path(tmp).write_bytes(data)
                else:
                    jpg = read_dicom(rel, data, recipe="mimic-jpg")[0]
                    Image.fromarray(jpg, mode="L").save(tmp, format="JPEG", quality=95)
            n += 1
    return n


def _csv_gz(path: Path, header, rows) -> None:
    """A gzipped CSV, byte-identical for the same rows (no timestamp in the gzip header)."""
    text = "\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n"
    with atomic.atomic_path(path) as tmp:
        Path(tmp).write_bytes(gzip.compress(text.encode(), mtime=0))


def _labels(sp: StudyPlan, observations, *, radiologist=False, negbio=False) -> list[str]:
    st = replace(sp.study, part="train", ambiguous=() if negbio else sp.study.ambiguous) if not radiologist \
        else sp.study
    return cx.label_cells(st, observations, radiologist=radiologist)


def _write_tables(root: Path, plans: list[StudyPlan], size: int, dicom: bool, seed: int,
                  label_tables: bool = False) -> None:
    card = cards.dataset_card("mimic")
    layout = card["layout"]
    alphabetical = sorted(card["findings"])        # the release's column order
    height = round(size * 1.2)
    if dicom:
        records = [[sp.subject_id, sp.study_id, im.dicom_id, relative_path(sp.subject_id, sp.study_id,
                                                                            im.dicom_id, "dcm")]
                   for sp in plans for im in sp.images]
        _csv_gz(root / f"{layout['record_list']}.gz", ["subject_id", "study_id", "dicom_id", "path"], records)
        _csv_gz(root / f"{layout['study_list']}.gz", ["subject_id", "study_id", "path"],
                [[sp.subject_id, sp.study_id, relative_path(sp.subject_id, sp.study_id, None, "")]
                 for sp in plans])
        with atomic.atomic_path(root / layout["reports_zip"]) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for sp in plans:
                    info = zipfile.ZipInfo(relative_path(sp.subject_id, sp.study_id, None, "txt"),
                                           date_time=(2019, 1, 1, 0, 0, 0))
                    zf.writestr(info, study_report(sp, seed), zipfile.ZIP_DEFLATED)
        if not label_tables:
            return
    meta = [[im.dicom_id, sp.subject_id, sp.study_id, "CHEST (PA AND LAT)" if len(sp.images) > 1 else
             "CHEST (PORTABLE AP)", im.view, height, size, sp.date, "101530.000", "CHEST (PA AND LAT)",
             "lateral" if im.lateral else "postero-anterior" if im.view == "PA" else "antero-posterior",
             "Erect"] for sp in plans for im in sp.images]
    _csv_gz(root / f"{layout['metadata']}.gz", METADATA_HEADER, meta)
    _csv_gz(root / f"{layout['split']}.gz", ["dicom_id", "study_id", "subject_id", "split"],
            [[im.dicom_id, sp.study_id, sp.subject_id, SPLIT_OF[sp.study.part]] for sp in plans for im in sp.images])
    for kind in ("chexpert", "negbio"):
        _csv_gz(root / f"{layout['labels'][kind]}.gz", ["subject_id", "study_id", *alphabetical],
                [[sp.subject_id, sp.study_id, *_labels(sp, alphabetical, negbio=kind == "negbio")] for sp in plans])
    radiologist = ["Airspace Opacity" if f == "Lung Opacity" else f for f in alphabetical]
    rows = [[sp.study_id, *_labels(sp, alphabetical, radiologist=True)] for sp in plans if sp.study.part == "test"]
    atomic.write_text(root / layout["test_labels"],
                      "\n".join(",".join(r) for r in [["study_id", *radiologist], *rows]) + "\n")
    if dicom:
        return
    atomic.write_text(root / "IMAGE_FILENAMES", "".join(
        relative_path(sp.subject_id, sp.study_id, im.dicom_id, "jpg") + "\n" for sp in plans for im in sp.images))


def true_labels(n_images: int, n_patients: int | None, seed: int):
    """What the phantom's reports say, per study (subject_id, study_id and the CheXpert-labeler
    states of the 14 observations, "" when unmentioned): the ground truth a report labeler is
    scored against. The same plan as :func:`write_dataset` with these arguments."""
    import pandas as pd

    findings = cards.dataset_card("mimic")["findings"]
    plans = plan(n_images, n_patients or max(3, n_images // 5), seed)
    return pd.DataFrame([[sp.subject_id, sp.study_id, *_labels(sp, findings)] for sp in plans],
                        columns=["subject_id", "study_id", *findings])


def study_report(sp: StudyPlan, seed: int) -> str:
    """The free-text report of one study (what was drawn, hedged and denied)."""
    st = sp.study
    return report(np.random.default_rng([seed, 23, int(sp.study_id)]), stated=st.plain,
                  hedged=st.faint + st.ambiguous, denied=st.negated, view=st.projection,
                  lateral=len(sp.images) > 1, sex=st.sex, prior=st.study > 1)


def write_dataset(out_dir, n_images: int = 600, n_patients: int | None = None, size: int = 256, seed: int = 0,
                  workers: int | None = None, dicom: bool = False, label_tables: bool = False) -> dict:
    """Write the phantom JPG release (or, with ``dicom``, the DICOM release) into ``out_dir``
    and return counts. ``label_tables`` puts the JPG release's label, split and metadata CSVs
    beside the DICOM release, as users who downloaded both often do."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    n_patients = n_patients or max(3, n_images // 5)
    plans = plan(n_images, n_patients, seed)
    by_patient: dict[int, list] = {}
    for sp in plans:
        by_patient.setdefault(sp.study.patient, []).append(sp)
    tasks = [(group, size, seed, str(root), dicom) for group in by_patient.values()]
    with progress(total=len(tasks), desc=f"synth mimic ({'DICOM' if dicom else 'JPG'})", unit="patient") as bar:
        for _ in imap(_render, tasks, workers, chunksize=2):
            bar.update(1)
    _write_tables(root, plans, size, dicom, seed, label_tables)
    images = [im for sp in plans for im in sp.images]
    info = {"images": len(images), "patients": len(by_patient), "studies": len(plans), "size": size,
            "seed": seed, "release": "MIMIC-CXR (DICOM)" if dicom else "MIMIC-CXR-JPG 2.1.0",
            "monochrome1": sum(im.photometric == "MONOCHROME1" for im in images),
            "blank_views": sum(not im.view for im in images)}
    log.info("phantom %s in %s: %s", info["release"], root, info)
    return info
