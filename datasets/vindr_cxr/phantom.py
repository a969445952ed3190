"""Write a phantom VinDr-CXR in the exact on-disk layouts: the PhysioNet release or the Kaggle one.

* PhysioNet vindr-cxr 1.0.0 (``layout="physionet"``): ``annotations/image_labels_train.csv`` (one row
  per reader and image: ``image_id, rad_id`` and the 28 labels as 0/1), ``image_labels_test.csv``
  (the consensus, one row per image, "Other disease"), ``annotations_{train,test}.csv`` (``image_id,
  rad_id, class_name, x_min, y_min, x_max, y_max``, one row per box, "No finding" rows without one),
  and ``train/``, ``test/<image_id>.dicom``.
* Kaggle VinBigData (``layout="kaggle"``): ``train.csv`` (``image_id, class_name, class_id, rad_id,
  x_min, y_min, x_max, y_max``, rows in shuffled order, "No finding" = class 14 without a box),
  ``train/<image_id>.dicom``, and unlabelled ``test/<image_id>.dicom`` with ``sample_submission.csv``.

Each image is its own patient (image ids are 32 hex digits). The 14 local labels of the
competition are drawn with distinct phantom patterns (:data:`PATTERNS`), with their boxes from the
renderer in the DICOM's own pixels. Every training image is read by 3 of 17 radiologists who partly
disagree: each marks a drawn finding most of the time, with their own box around it, and now and
then a finding that is not there; the diagnoses (global labels) follow what a reader marked
(:data:`DIAGNOSES`). The test images carry the consensus: what was drawn, with exact boxes. The
DICOMs are MONOCHROME1 or MONOCHROME2, 12 to 16 bits stored, portrait or square. Output is
byte-identical for a seed, whatever the number of worker processes.
"""

from __future__ import annotations

import io
import logging
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
NAME = "vindr_cxr"
LAYOUTS = ("physionet", "kaggle")
# VinDr local label -> the phantom pattern drawn for it (distinct for the 14 labels of both layouts).
PATTERNS = {
    "Aortic enlargement": "Hernia", "Atelectasis": "Atelectasis", "Calcification": "Nodule",
    "Cardiomegaly": "Cardiomegaly", "Consolidation": "Consolidation", "ILD": "Edema", "Infiltration": "Infiltration",
    "Lung Opacity": "Pneumonia", "Nodule/Mass": "Mass", "Other lesion": "Emphysema", "Pleural effusion": "Effusion",
    "Pleural thickening": "Pleural_Thickening", "Pneumothorax": "Pneumothorax", "Pulmonary fibrosis": "Fibrosis",
}
# Global label (diagnosis) -> the local labels that suggest it to a reader (PhysioNet layout only).
DIAGNOSES = {"Pneumonia": ("Consolidation", "Lung Opacity"), "Lung tumor": ("Nodule/Mass",),
             "Tuberculosis": ("Pulmonary fibrosis", "Calcification"), "COPD": ("Other lesion",),
             "Other diseases": ("ILD",)}
READERS = [f"R{i}" for i in range(1, 18)]
READER_WEIGHTS = np.array([2, 3, 2, 2, 3, 2, 2, 9, 9, 9, 2, 2, 2, 2, 2, 2, 1], dtype=float)
SEE, IMAGINE, JITTER = 0.85, 0.06, 0.06    # a reader marks a drawn finding / an absent one; box jitter
ASPECTS, BITS = (1.0, 1.15, 1.25), (12, 14, 16)
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


@dataclass(frozen=True)
class ImagePlan:
    """One image: its id, part of the release, what is drawn, its readers and how its DICOM is stored."""

    index: int
    image_id: str
    part: str                # train or test
    drawn: tuple             # local labels drawn (keys of PATTERNS)
    readers: tuple           # 3 reader ids (train), or the reader who recorded the consensus (test)
    aspect: float            # height / width
    photometric: str
    bits: int
    age: int
    sex: str


def plan(n_images: int, seed: int, test_fraction: float = 0.2, normal: float = 0.4) -> list[ImagePlan]:
    """Every image of the phantom release (deterministic for a seed)."""
    if n_images < 8:
        raise CxrConfigError(f"need at least 8 images, got {n_images}", key="n_images")
    rng = np.random.default_rng([seed, 41])
    local = list(PATTERNS)
    n_test = max(1, round(test_fraction * n_images))
    ids = set()
    out = []
    for i in range(n_images):
        image_id = "".join(f"{int(x):08x}" for x in rng.integers(0, 2 ** 32, 4))
        assert image_id not in ids
        ids.add(image_id)
        drawn: tuple = ()
        if rng.random() >= normal:
            k = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
            drawn = tuple(sorted(rng.choice(local, size=k, replace=False).tolist()))
        readers = tuple(rng.choice(READERS, size=3, replace=False, p=READER_WEIGHTS / READER_WEIGHTS.sum()).tolist())
        out.append(ImagePlan(i, image_id, "test" if i >= n_images - n_test else "train", drawn, readers,
                             float(rng.choice(ASPECTS)), "MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2",
                             int(rng.choice(BITS)), int(rng.integers(18, 90)), str(rng.choice(["M", "F"]))))
    return out


def stored_pixels(display: np.ndarray, image: ImagePlan, rng: np.random.Generator) -> np.ndarray:
    """A display image -> stored values of ``image.bits`` bits as a detector writes them (inverted
    for MONOCHROME1, where low values are white)."""
    top = 2 ** image.bits - 1
    values = display.astype(np.float64) * (0.8 * top / 255.0) + 0.05 * top + rng.normal(0.0, top / 700, display.shape)
    values = np.clip(np.round(values), 0, top).astype(np.uint16)
    return (top - values).astype(np.uint16) if image.photometric == "MONOCHROME1" else values


def dicom_bytes(image: ImagePlan, stored: np.ndarray, seed: int) -> bytes:
    """The de-identified DICOM file of one image (age and sex kept, as in the release) as bytes."""
    import pydicom.uid as uids
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uids.generate_uid(
        entropy_srcs=[str(seed), image.image_id])
    ds.Modality, ds.BodyPartExamined = "DX", "CHEST"
    ds.PatientAge, ds.PatientSex = f"{image.age:03d}Y", image.sex
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, image.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, image.bits, image.bits - 1, 0
    ds.PixelSpacing = [0.15, 0.15]
    if image.index % 3:
        lo, hi = np.percentile(stored, [1, 99])
        ds.WindowCenter, ds.WindowWidth = f"{(lo + hi) / 2:.1f}", f"{max(hi - lo, 1):.1f}"
    ds.PixelData = stored.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _render(args) -> tuple[str, tuple[int, int], dict]:
    """Render one image and write its DICOM; returns (image_id, (width, height), finding -> box
    as integer x_min, y_min, x_max, y_max in the DICOM's pixels)."""
    image, size, seed, root = args
    rng = np.random.default_rng([seed, 42, image.index])
    ph = render_phantom([PATTERNS[f] for f in image.drawn], size, rng, sample_anatomy(rng))
    width, height = size, round(size * image.aspect)
    pixels = np.asarray(Image.fromarray(ph.image, mode="L").resize((width, height), Image.Resampling.BILINEAR))
    sy = height / size
    boxes = {}
    for f in image.drawn:
        x, y, w, h = ph.boxes[PATTERNS[f]]
        boxes[f] = _clip((x, y * sy, x + w, (y + h) * sy), width, height)
    data = dicom_bytes(image, stored_pixels(pixels, image, rng), seed)
    with atomic.atomic_path(Path(root) / f"{image.part}/{image.image_id}.dicom") as tmp:
        Path(tmp).write_bytes(data)
    return image.image_id, (width, height), boxes


def _clip(xyxy, width: int, height: int) -> tuple:
    """Integer pixel box inside the image, at least one pixel wide and high."""
    x0, y0 = int(np.clip(np.floor(xyxy[0]), 0, width - 1)), int(np.clip(np.floor(xyxy[1]), 0, height - 1))
    x1, y1 = int(np.clip(np.ceil(xyxy[2]), x0 + 1, width)), int(np.clip(np.ceil(xyxy[3]), y0 + 1, height))
    return x0, y0, x1, y1


def _reading(image: ImagePlan, boxes: dict, wh, seed: int, reader: str) -> dict:
    """What one reader marks on one image: local label -> box (their own), and the diagnoses."""
    rng = np.random.default_rng([seed, 43, image.index, int(reader[1:])])
    width, height = wh
    marks = {}
    for f in image.drawn:
        if rng.random() < SEE:
            x0, y0, x1, y1 = boxes[f]
            d = rng.uniform(-JITTER, JITTER, 4) * np.array([width, height, width, height])
            marks[f] = _clip((x0 + d[0], y0 + d[1], x1 + d[2], y1 + d[3]), width, height)
    if rng.random() < IMAGINE:
        absent = [f for f in PATTERNS if f not in image.drawn]
        f = str(rng.choice(absent))
        cx, cy, half = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.7) * height, rng.uniform(0.05, 0.15) * width
        marks[f] = _clip((cx - half, cy - half, cx + half, cy + half), width, height)
    diagnoses = {d for d, hints in DIAGNOSES.items() if set(hints) & set(marks) and rng.random() < 0.7}
    return {"marks": marks, "diagnoses": diagnoses}


def _csv(header, rows) -> str:
    """CSV text (no cell here holds a comma or a quote)."""
    return "\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n"


def _box_cells(box) -> list[str]:
    return [f"{v:.1f}" for v in box] if box else ["", "", "", ""]


def _write_physionet(root: Path, plans, sizes, boxes, seed: int) -> int:
    """The four annotation CSVs; returns the number of box rows."""
    c = cards.dataset_card(NAME)
    layout, findings, nf = c["layout"], c["findings"], c["no_finding"]
    test_header = ["image_id", *("Other disease" if f == "Other diseases" else f for f in findings)]
    labels, tests, ann, ann_test = [], [], [], []
    for p in plans:
        if p.part == "test":
            diagnoses = {d for d, hints in DIAGNOSES.items() if set(hints) & set(p.drawn)}
            positive = set(p.drawn) | diagnoses
            tests.append([p.image_id, *(int(f in positive or (f == nf and not positive)) for f in findings)])
            rows = [[p.image_id, p.readers[0], f, *_box_cells(boxes[p.image_id][f])] for f in p.drawn]
            ann_test += rows or [[p.image_id, p.readers[0], nf, *_box_cells(None)]]
            continue
        for reader in p.readers:
            r = _reading(p, boxes[p.image_id], sizes[p.image_id], seed, reader)
            positive = set(r["marks"]) | r["diagnoses"]
            labels.append([p.image_id, reader, *(int(f in positive or (f == nf and not positive)) for f in findings)])
            rows = [[p.image_id, reader, f, *_box_cells(b)] for f, b in r["marks"].items()]
            ann += rows or [[p.image_id, reader, nf, *_box_cells(None)]]
    folder = root / layout["annotations_dir"]
    atomic.write_text(folder / layout["image_labels"]["train"], _csv(["image_id", "rad_id", *findings], labels))
    atomic.write_text(folder / layout["image_labels"]["test"], _csv(test_header, tests))
    atomic.write_text(folder / layout["annotations"]["train"], _csv(layout["annotation_columns"], ann))
    atomic.write_text(folder / layout["annotations"]["test"], _csv(layout["annotation_columns"], ann_test))
    return sum(r[3] != "" for r in ann + ann_test)


def _write_kaggle(root: Path, plans, sizes, boxes, seed: int) -> int:
    """``train.csv`` (shuffled rows) and ``sample_submission.csv``; returns the number of box rows."""
    c = cards.dataset_card(NAME)
    kaggle, nf = c["findings_kaggle"], c["no_finding"]
    rows = []
    for p in plans:
        if p.part != "train":
            continue
        for reader in p.readers:
            marks = _reading(p, boxes[p.image_id], sizes[p.image_id], seed, reader)["marks"]
            rows += [[p.image_id, f, kaggle.index(f), reader, *_box_cells(b)] for f, b in marks.items()]
            if not marks:
                rows.append([p.image_id, nf, kaggle.index(nf), reader, *_box_cells(None)])
    order = np.random.default_rng([seed, 44]).permutation(len(rows))
    atomic.write_text(root / c["layout"]["kaggle_labels"][0], _csv(c["layout"]["kaggle_columns"],
                                                                   [rows[i] for i in order]))
    atomic.write_text(root / "sample_submission.csv", _csv(["image_id", "PredictionString"],
                                                           [[p.image_id, "14 1 0 0 1 1"] for p in plans
                                                            if p.part == "test"]))
    return sum(r[4] != "" for r in rows)


def write_dataset(out_dir, n_images: int = 600, n_patients: int | None = None, size: int = 256, seed: int = 0,
                  workers: int | None = None, layout: str = "physionet") -> dict:
    """Write the phantom release (``layout``: physionet or kaggle) into ``out_dir`` and return counts.
    Every image is its own patient, so ``n_patients``, when given, must equal ``n_images``."""
    if layout not in LAYOUTS:
        raise CxrConfigError(f"unknown layout {layout!r}", key="layout", choices=LAYOUTS)
    if n_patients not in (None, n_images):
        raise CxrConfigError(f"VinDr-CXR has one image per patient (image_id stands in for the patient): "
                             f"patients must equal images ({n_images}), got {n_patients}", key="patients")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    plans = plan(n_images, seed)
    sizes, boxes = {}, {}
    tasks = [(p, size, seed, str(root)) for p in plans]
    with progress(total=len(tasks), desc=f"synth vindr_cxr ({layout})", unit="img") as bar:
        for image_id, wh, b in imap(_render, tasks, workers, chunksize=4):
            sizes[image_id], boxes[image_id] = wh, b
            bar.update(1)
    write = _write_physionet if layout == "physionet" else _write_kaggle
    n_boxes = write(root, plans, sizes, boxes, seed)
    info = {"images": len(plans), "patients": len(plans), "boxes": n_boxes, "layout": layout,
            "train_images": sum(p.part == "train" for p in plans), "test_images": sum(p.part == "test" for p in plans),
            "monochrome1": sum(p.photometric == "MONOCHROME1" for p in plans), "size": size, "seed": seed}
    log.info("phantom VinDr-CXR (%s) in %s: %s", layout, root, info)
    return info
