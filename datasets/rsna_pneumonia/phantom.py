"""Write a phantom RSNA Pneumonia Detection Challenge (stage 2) release in the exact Kaggle layout.

``stage_2_train_labels.csv`` in the real header ``patientId,x,y,width,height,Target`` (a negative image
is one row with blank box cells, a positive one a row per box, coordinates written as ``264.0`` in the
DICOM's pixels), ``stage_2_detailed_class_info.csv`` (``patientId,class``, one row per label row) and
``stage_2_train_images/<patientId>.dcm``: CR, 8-bit MONOCHROME2, JPEG Baseline as the release's are,
with PatientSex, PatientAge (``"058"``), ViewPosition, ``SeriesDescription`` ``view: PA`` and the
patientId as PatientID and PatientName. patientIds are UUIDs; one image each.

"Lung Opacity" images carry one or two pneumonia opacities drawn by the phantom renderer
(:func:`cxr_tf.synth.phantom.render_phantom`; a second one is composited from another render where
it does not overlap the first), each with its box; "No Lung Opacity / Not Normal" images one other finding and no
box; "Normal" images nothing. Variants: the label file as Kaggle's one-file zip or gzipped, no class
file, and torchxrayvision's DICOM header table. Output is byte-identical for a seed.
"""

from __future__ import annotations

import gzip
import io
import logging
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_tf.core import atomic, cards
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.core.parallel import imap
from cxr_tf.core.progress import progress
from cxr_tf.synth.phantom import render_phantom, sample_anatomy

log = logging.getLogger(__name__)
LABEL_HEADER = "patientId,x,y,width,height,Target"
CLASS_HEADER = "patientId,class"
# torchxrayvision's dump of the DICOM headers (an unnamed pandas index first)
TABLE_HEADER = (",BodyPartExamined,ConversionType,Filename,InstanceNumber,Modality,PatientAge,PatientID,"
                "PatientOrientation,PatientSex,PixelSpacing,SamplesPerPixel,SeriesNumber,ViewPosition")
# class -> probability, near the release's 22.5 % / 44.3 % / 33.2 % of images
CLASS_SHARES = {"Lung Opacity": 0.25, "No Lung Opacity / Not Normal": 0.42, "Normal": 0.33}
# what a "Not Normal" image shows: findings of the renderer that are not airspace opacities
OTHER_FINDINGS = ("Cardiomegaly", "Effusion", "Pneumothorax", "Emphysema", "Nodule", "Mass", "Fibrosis",
                  "Pleural_Thickening", "Hernia")
SPACINGS = (0.143, 0.168, 0.139, 0.171, 0.194311)   # mm at 1024 pixels, as in the real headers
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
LABEL_FORMATS = ("csv", "zip", "gz")


@dataclass(frozen=True)
class PlannedImage:
    """One image (and patient) of the phantom release, decided before any pixel is drawn."""

    index: int
    patient_id: str
    klass: str
    others: tuple        # findings drawn on a "Not Normal" image
    opacities: int       # pneumonia opacities drawn (Lung Opacity: 1 or 2)
    sex: str
    age: int
    view: str
    spacing: float


def plan(n_images: int, seed: int) -> list[PlannedImage]:
    """Every image with its class, findings and demographics (deterministic for a seed); with three
    images or more each class appears at least once."""
    if n_images < 1:
        raise CxrConfigError(f"need at least one image, got {n_images}", key="n_images")
    rng = np.random.default_rng([seed, 41])
    names = list(CLASS_SHARES)
    classes = rng.choice(names, size=n_images, p=list(CLASS_SHARES.values())).tolist()
    if n_images >= len(names):
        for slot, name in zip(rng.choice(n_images, len(names), replace=False), names):
            if name not in classes:
                classes[int(slot)] = name
    out = []
    for i, klass in enumerate(classes):
        pid = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        positive = klass == "Lung Opacity"
        others = (str(rng.choice(OTHER_FINDINGS)),) if klass == "No Lung Opacity / Not Normal" else ()
        out.append(PlannedImage(i, pid, klass, others, int(rng.choice([1, 2], p=[0.45, 0.55])) if positive else 0,
                                "M" if rng.random() < 0.57 else "F", int(rng.integers(2, 92)),
                                "AP" if rng.random() < (0.75 if positive else 0.4) else "PA",
                                float(rng.choice(SPACINGS))))
    return out


def _overlaps(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def render(img: PlannedImage, size: int, seed: int) -> tuple[np.ndarray, list]:
    """The uint8 image of one planned image and its pneumonia boxes (x, y, w, h in its pixels). A
    second opacity is the difference of another render with and without it (that difference is zero
    outside its box), added where it does not overlap the first."""
    rng = np.random.default_rng([seed, 42, img.index])
    anatomy = sample_anatomy(rng)
    if not img.opacities:
        return render_phantom(img.others, size, rng, anatomy).image, []
    first = render_phantom(["Pneumonia"], size, rng, anatomy)
    pixels, boxes = first.image.astype(np.float32), [first.boxes["Pneumonia"]]
    for attempt in range(16 if img.opacities > 1 else 0):
        r = np.random.default_rng([seed, 43, img.index, attempt])
        state = r.bit_generator.state
        without = render_phantom([], size, r, anatomy).image.astype(np.float32)
        r.bit_generator.state = state
        second = render_phantom(["Pneumonia"], size, r, anatomy)
        box = second.boxes["Pneumonia"]
        if not _overlaps(box, boxes[0]):
            pixels += second.image.astype(np.float32) - without
            boxes.append(box)
            break
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8), boxes


def dicom_bytes(img: PlannedImage, pixels: np.ndarray, seed: int) -> bytes:
    """The DICOM file of one image as the release writes them: CR, 8-bit MONOCHROME2, JPEG Baseline."""
    import pydicom.uid as uids
    from pydicom import config
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate

    def uid(kind):
        return uids.generate_uid(entropy_srcs=[str(seed), kind, img.patient_id])

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="JPEG", quality=95)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("sop")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate, ds.StudyTime = "19010101", "000000.00"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.Modality, ds.ConversionType = "CR", "WSD"
    ds.SeriesDescription = f"view: {img.view}"
    ds.PatientName = ds.PatientID = img.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = img.sex
    # "058": no unit, as the release writes ages (not a valid AS, which pydicom would warn about)
    ds["PatientAge"] = DataElement(0x00101010, "AS", f"{img.age:03d}", validation_mode=config.IGNORE)
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", img.view
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "", "1", "1", ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    spacing = f"{img.spacing * 1024 / pixels.shape[1]:.6g}"
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _write(args) -> list:
    """Render and write one image; returns its boxes rounded to whole pixels."""
    img, size, seed, root, image_path = args
    pixels, boxes = render(img, size, seed)
    with atomic.atomic_path(Path(root) / image_path.format(patientId=img.patient_id)) as tmp:
        Path(tmp).write_bytes(dicom_bytes(img, pixels, seed))
    return [tuple(float(max(1, round(v))) if k >= 2 else float(round(v)) for k, v in enumerate(b)) for b in boxes]


def _write_csv(path: Path, name: str, lines: list[str], fmt: str) -> Path:
    """A CSV as the release ships it: plain, gzipped, or the only file inside ``name.zip`` (fixed
    timestamps, so the bytes are the same for a seed)."""
    data = ("\n".join(lines) + "\n").encode()
    target = path / (name if fmt == "csv" else f"{name}.{fmt}")
    with atomic.atomic_path(target) as tmp:
        if fmt == "csv":
            Path(tmp).write_bytes(data)
        elif fmt == "gz":
            Path(tmp).write_bytes(gzip.compress(data, mtime=0))
        else:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(zipfile.ZipInfo(name, date_time=(2018, 10, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return target


def write_dataset(out_dir, n_images: int = 600, n_patients: int | None = None, size: int = 256, seed: int = 0,
                  workers: int | None = None, labels_format: str = "csv", class_info: bool = True,
                  header_table: bool = False) -> dict:
    """Write the phantom release into ``out_dir`` (the folder ``--data-dir`` takes) and return counts.

    ``n_patients`` must be ``n_images`` or None (one image per patientId). ``labels_format``: ``csv``,
    ``zip`` (Kaggle's one-file download ``stage_2_train_labels.csv.zip``) or ``gz``. ``class_info``:
    write ``stage_2_detailed_class_info.csv``. ``header_table``: write torchxrayvision's header dump
    ``stage_2_train_images_dicom_headers.csv.gz``."""
    if n_patients not in (None, n_images):
        raise CxrConfigError(f"one image per patientId: patients ({n_patients}) must equal images ({n_images})",
                             key="patients")
    if labels_format not in LABEL_FORMATS:
        raise CxrConfigError(f"unknown labels_format {labels_format!r}", key="labels_format", choices=LABEL_FORMATS)
    layout = cards.dataset_card("rsna_pneumonia")["layout"]
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    planned = plan(n_images, seed)
    tasks = [(img, size, seed, str(root), layout["image_path"]) for img in planned]
    boxes = []
    with progress(total=len(tasks), desc="synth rsna_pneumonia", unit="img") as bar:
        for found in imap(_write, tasks, workers, chunksize=8):
            boxes.append(found)
            bar.update(1)
    labels, classes = [LABEL_HEADER], [CLASS_HEADER]
    for img, found in zip(planned, boxes):
        rows = [",".join(f"{v:.1f}" for v in b) + ",1" for b in found] or [",,,,0"]
        labels += [f"{img.patient_id},{row}" for row in rows]
        classes += [f"{img.patient_id},{img.klass}"] * len(rows)
    files = {"labels": _write_csv(root, layout["label_files"][0], labels, labels_format)}
    if class_info:
        files["classes"] = _write_csv(root, layout["class_files"][0], classes, "csv")
    if header_table:
        table = [TABLE_HEADER] + [f"{i},CHEST,WSD,{p.patient_id}.dcm,1.0,CR,{p.age},{p.patient_id},,{p.sex},"
                                  f"{p.spacing},1.0,1.0,{p.view}" for i, p in enumerate(planned)]
        files["headers"] = _write_csv(root, layout["header_tables"][0], table, "gz")
    info = {"images": len(planned), "patients": len(planned), "label_rows": len(labels) - 1,
            "positive_images": sum(bool(b) for b in boxes), "boxes": sum(map(len, boxes)),
            "classes": {k: sum(p.klass == k for p in planned) for k in CLASS_SHARES},
            "files": {k: str(v) for k, v in files.items()}, "size": size, "seed": seed}
    log.info("phantom RSNA Pneumonia in %s: %s", root, info)
    return info
