"""``cxr-tf dicom``: many DICOM files -> ``metadata.csv`` (one row per file), ``errors.csv`` and,
if asked, display-ready PNG or JPEG images, de-identified unless ``keep_phi`` (no TensorFlow here).

Each file is read once, checked (one grayscale frame), decoded with the display pipeline of
:mod:`cxr_tf.dicom.display`, de-identified with :mod:`cxr_tf.dicom.deid` and described from the
de-identified dataset, so what the profile removed cannot reach a column. Output names carry no
identifier either: a file is known by ``file_id``, the keyed hash of its path relative to its
input root, and its image is ``<file_id>.png``. With ``keep_phi`` the identifying columns are
added, the image keeps its input name (``<relative path>.png``) and the original UIDs are kept.
``errors.csv`` names the input path of each file that could not be read and why (so it can be
found); the rest are still converted. Every output file is written atomically.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError, CxrDataError, CxrImageError
from cxr_tf.core.parallel import mp_context
from cxr_tf.core.progress import progress

log = logging.getLogger(__name__)
FORMATS = (None, "png", "jpg")
COLUMNS = ["file_id", "patient", "modality", "body_part", "view", "photometric", "rows", "columns", "bits_stored",
           "pixel_spacing", "transfer_syntax", "manufacturer", "study_uid", "series_uid", "sop_uid", "sop_class",
           "window_center", "window_width", "voi", "status", "image", "deid_profile"]
PHI_COLUMNS = {"file": None, "patient_id": "PatientID", "patient_name": "PatientName",
               "birth_date": "PatientBirthDate", "sex": "PatientSex", "age": "PatientAge", "study_date": "StudyDate",
               "study_time": "StudyTime", "accession_number": "AccessionNumber", "institution": "InstitutionName",
               "referring_physician": "ReferringPhysicianName", "operators": "OperatorsName",
               "station": "StationName", "device_serial": "DeviceSerialNumber"}


@dataclass
class Job:
    """One file to convert."""

    path: str
    rel: str
    out: str
    image_format: str | None
    keep_phi: bool
    salt: bytes = field(repr=False, default=b"")


def find_files(paths) -> list[tuple[Path, str]]:
    """(file, path relative to its input root) for every file given or under a directory given
    (DICOM by a .dcm/.dicom name or by content), in a stable order."""
    from cxr_tf.dicom.display import is_dicom

    out = []
    for given in map(Path, paths):
        if given.is_file():
            out.append((given, given.name))
        elif given.is_dir():
            for p in sorted(q for q in given.rglob("*") if q.is_file()):
                with open(p, "rb") as fh:
                    head = fh.read(132)
                if is_dicom(head, p.name):
                    out.append((p, p.relative_to(given).as_posix()))
        else:
            raise CxrDataError(given, "no such file or directory")
    return out


def convert_one(job: Job) -> dict:
    """Convert one file; returns its metadata row, or ``{"error": reason}`` (every runner, pool or
    Beam, goes through here)."""
    from cxr_tf.dicom.deid import Pseudonyms, deidentify, profile_name
    from cxr_tf.dicom.display import check_image, header_info, open_dataset, read_dicom

    pseudonyms = Pseudonyms(job.salt)
    try:
        data = Path(job.path).read_bytes()
    except OSError as exc:
        return {"error": f"cannot read: {exc.strerror or exc}"}
    try:
        ds = open_dataset(job.path, data)
        check_image(ds, job.path)
        pixels, info = read_dicom(job.path, data)
    except CxrImageError as exc:
        return {"error": exc.problem}
    except Exception as exc:        # a decoder or pydicom failure on bad bytes: listed, never a traceback
        return {"error": f"cannot read or decode ({type(exc).__name__}: {exc})"}
    identified = {col: str(ds.get(kw, "") or "") for col, kw in PHI_COLUMNS.items() if kw} if job.keep_phi else {}
    if not job.keep_phi:
        try:
            deidentify(ds, pseudonyms)
        except Exception as exc:    # never write what could not be de-identified
            return {"error": f"de-identification failed ({type(exc).__name__})"}
    header = header_info(ds)
    file_id = pseudonyms.token(job.rel)
    row = {"file_id": file_id, "patient": str(ds.get("PatientID", "") or ""),
           **{k: header[k] for k in COLUMNS if k in header}, "voi": info["voi"], "status": "decoded",
           "deid_profile": "none (--keep-phi)" if job.keep_phi else profile_name()}
    if job.image_format:
        name = f"{job.rel}.{job.image_format}" if job.keep_phi else f"{file_id}.{job.image_format}"
        _save(pixels, Path(job.out) / "images" / name, job.image_format)
        row["image"] = f"images/{name}"
    else:
        row["image"] = ""
    if job.keep_phi:
        row.update(file=job.rel, **identified)
    return row


def _save(pixels, path: Path, fmt: str) -> None:
    """A grayscale image with no metadata chunk (nothing but pixels), written atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG" if fmt == "png" else "JPEG",
                                           **({"optimize": False} if fmt == "png" else {"quality": 95}))
    with atomic.atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())


def convert(paths, out_dir, *, image_format: str | None = None, keep_phi: bool = False, salt: str | None = None,
            workers: int | None = None, runner: str = "pool", beam_options: dict | None = None) -> dict:
    """Convert DICOM files (see the module doc); returns counts and the output paths. ``runner``:
    ``pool`` (``workers`` processes) or ``beam`` (an Apache Beam pipeline with ``beam_options``,
    :mod:`cxr_tf.dicom.beam`); the same salt gives the same output with either."""
    from cxr_tf.core.beam import RUNNERS, remove_stale, require
    from cxr_tf.dicom.deid import Pseudonyms

    if runner not in RUNNERS:
        raise CxrConfigError(f"unknown runner {runner!r}", key="runner", choices=RUNNERS)
    if runner == "beam":
        require()
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {FORMATS}, got {image_format!r}")
    files = find_files(paths)
    if not files:
        raise CxrDataError(", ".join(map(str, paths)), "no DICOM files found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pseudonyms = Pseudonyms(salt)
    jobs = [Job(str(p), rel, str(out), image_format, keep_phi, pseudonyms._key) for p, rel in files]
    remove_stale(out)
    if runner == "beam":
        from cxr_tf.dicom.beam import convert_beam
        rows = convert_beam(jobs, out, convert_one, options=beam_options, workers=workers)
    else:
        rows = _run_pool(jobs, workers)
    good = [r for r in rows if "error" not in r]
    failures = [(job, r["error"]) for job, r in zip(jobs, rows) if "error" in r]
    bad = [{"file": job.path, "reason": why} for job, why in failures]
    columns = COLUMNS + (list(PHI_COLUMNS) if keep_phi else [])
    atomic.write_csv(out / "metadata.csv", pd.DataFrame(good, columns=columns))
    atomic.write_csv(out / "errors.csv", pd.DataFrame(bad, columns=["file", "reason"]))
    summary = {"files": len(jobs), "converted": len(good), "failed": len(bad), "out_dir": str(out),
               "deidentified": not keep_phi, "random_salt": pseudonyms.random_salt and not keep_phi,
               "images": image_format, "failures": [(job.path, why) for job, why in failures]}
    log.info("cxr-tf dicom: %s", summary)
    return summary


def _run_pool(jobs: list[Job], workers: int | None) -> list[dict]:
    """Convert every job in a process pool of ``workers`` (default: all cores); rows in job order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    rows = []
    with progress(total=len(jobs), desc="cxr-tf dicom", unit="file") as bar:
        if workers == 1:
            for r in map(convert_one, jobs):
                rows.append(r)
                bar.update(1)
        else:
            with mp_context().Pool(workers) as pool:
                for r in pool.imap(convert_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
                    rows.append(r)
                    bar.update(1)
    return rows
