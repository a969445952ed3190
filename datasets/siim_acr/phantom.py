"""Write a phantom SIIM-ACR Pneumothorax release in the exact on-disk layouts.

* Stage 1 (default): ``train-rle.csv`` in the real header (``ImageId, EncodedPixels``, rows in a
  shuffled order, ``-1`` for no pneumothorax, one row per mask) listing the DICOMs of
  ``dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``; the test
  DICOMs of ``dicom-images-test/`` (same nesting) are not listed, and one training DICOM has no
  row, as in the release.
* Stage 2 (``stage=2``): the same DICOMs with ``stage_2_train.csv`` (``ImageId,EncodedPixels``),
  which lists the train and the test images, and unlabelled ``stage_2_images/ID_<9 hex>.dcm``.

The DICOMs are made as the release's are: Secondary Capture, CR, 8-bit MONOCHROME2, JPEG Baseline,
UIDs under the release's root (study, series and instance UIDs of one image share their numbers),
PatientID a UUID that is also the PatientName, PatientAge in plain digits, ViewPosition PA or AP in
the header and the series description. Patients may have several images (``n_patients``; the
default gives each image its own patient, as the release reportedly does).

Pneumothorax is drawn by the phantom renderer (:mod:`cxr_tf.synth.phantom`); its mask is exactly the
pixels the finding darkened (the image rendered again without it from the same generator state),
written in the competition's relative run-length encoding (or, ``rle="absolute"``, Kaggle's
standard one) over the DICOM's own size. Some positives are written as two masks (two rows: an
upper and a lower part that overlap in a band, as the masks of 183 of the 624 real multi-mask
images overlap); some images carry other findings, unlabelled, as distractors. Output is
byte-identical for a seed, whatever the number of worker processes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_tf.core import atomic, cards
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.core.parallel import imap
from cxr_tf.core.progress import progress
from cxr_tf.imaging import masks
from cxr_tf.synth.phantom import jitter_anatomy, render_phantom, sample_anatomy

log = logging.getLogger(__name__)
HEADERS = {1: "ImageId, EncodedPixels", 2: "ImageId,EncodedPixels"}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DISTRACTORS = ("Nodule", "Mass", "Infiltration", "Cardiomegaly", "Atelectasis", "Fibrosis")
SPACINGS = (0.168, 0.143, 0.139)
TEST_FRACTION = 0.11       # stage 1's test images: about a ninth of the labelled ones


@dataclass(frozen=True)
class PlannedImage:
    """One DICOM of the phantom release, decided before any pixel is drawn."""

    image_id: str          # SOPInstanceUID, the file name and the label file's ImageId
    study_uid: str
    series_uid: str
    patient: int
    follow_up: int
    patient_id: str        # a UUID, as the release's PatientID
    age: int
    sex: str
    view: str
    spacing: float
    part: str              # train, test (stage 1's folders), unlisted (a training DICOM without a row), stage2
    positive: bool
    two_masks: bool
    distractors: tuple


def _uids(root: str, number: int, rng: np.random.Generator) -> tuple[str, str, str]:
    """(instance, study, series) UIDs numbered as the release's: one number, three suffixes."""
    stamp, micro = 1517875000 + int(rng.integers(0, 1000)), int(rng.integers(100, 999999))
    return tuple(f"{root}.{kind}.8323329.{number}.{stamp}.{micro - k}" for k, kind in enumerate((4, 2, 3)))


def plan(n_images: int, n_patients: int, seed: int) -> list[PlannedImage]:
    """Patients, UIDs, parts, labels and demographics of every DICOM (deterministic for a seed):
    ``n_images`` labelled ones (the stage-2 training set), then the unlabelled ones (a training
    DICOM without a row, and stage 2's test DICOMs), each of its own patient."""
    if n_images < 4 or not 1 <= n_patients <= n_images:
        raise CxrConfigError(f"need 4 <= images ({n_images}) and 1 <= patients ({n_patients}) <= images",
                             key="patients")
    synth = cards.dataset_card("siim_acr")["synth"]
    rng = np.random.default_rng([seed, 41])
    per_patient = 1 + rng.multinomial(n_images - n_patients, np.full(n_patients, 1 / n_patients))
    test = set(rng.permutation(n_patients)[:min(max(1, round(TEST_FRACTION * n_patients)), n_patients - 2)].tolist())
    extra = max(1, n_images // 20)
    numbers = iter(1 + rng.permutation(20 * (n_images + 2 * extra)))
    parts = [("test" if pid in test else "train", count) for pid, count in enumerate(per_patient)]
    parts += [("unlisted", 1)] * extra + [("stage2", 1)] * extra
    out = []
    for pid, (part, count) in enumerate(parts):
        patient_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        age0, sex, spacing = int(rng.integers(18, 86)), str(rng.choice(["M", "F"])), float(rng.choice(SPACINGS))
        for fu in range(count):
            sop, study, series = _uids(synth["uid_root"], int(next(numbers)), rng)
            positive = part in ("train", "test") and rng.random() < synth["positive_fraction"]
            two = positive and rng.random() < synth["multi_mask_fraction"]
            distractors = (str(rng.choice(DISTRACTORS)),) if rng.random() < 0.3 else ()
            out.append(PlannedImage(sop, study, series, pid, fu, patient_id, min(age0 + fu // 2, 95), sex,
                                    "PA" if rng.random() < 0.6 else "AP", spacing, part, bool(positive),
                                    bool(two), distractors))
    if not any(im.positive and im.part == "train" for im in out):     # a release always has positives
        first = next(i for i, im in enumerate(out) if im.part == "train")
        out[first] = replace(out[first], positive=True)
    return out


def mask_rows(ph_with: np.ndarray, ph_without: np.ndarray, two: bool) -> list[np.ndarray]:
    """The pneumothorax mask(s) of an image: the pixels the finding darkened, as one mask or as an
    upper and a lower one that overlap in a band of rows (as many real multi-mask images do)."""
    mask = (ph_without.astype(np.int16) - ph_with.astype(np.int16)) >= 2
    rows = np.flatnonzero(mask.any(axis=1))
    if not two or len(rows) < 4:
        return [mask]
    cut, band = rows[len(rows) // 2], max(1, len(rows) // 8)
    upper, lower = mask.copy(), mask.copy()
    upper[cut + band:], lower[:cut - band] = False, False
    return [upper, lower]


def encode(mask: np.ndarray, flavour: str) -> str:
    """One mask as the release writes it: relative (the competition's) or absolute 1-based runs."""
    canonical = masks.encode(mask)
    if flavour == "relative":
        return masks.to_relative(canonical)
    values = np.array(canonical.split(), dtype=np.int64)
    values[0::2] += 1
    return " ".join(map(str, values))


def dicom_bytes(im: PlannedImage, pixels: np.ndarray) -> bytes:
    """The DICOM file of one image, made as the release's are (see the module doc)."""
    from pydicom.config import disable_value_validation
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    jpeg = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(jpeg, format="JPEG", quality=95)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = im.image_id
    ds.file_meta.ImplementationClassUID = "1.2.276.0.7230010.3.0.3.6.0"
    ds.file_meta.ImplementationVersionName = "OFFIS_DCMTK_360"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "19010101", "000000.00", ""
    ds.Modality, ds.ConversionType, ds.ReferringPhysicianName = "CR", "WSD", ""
    ds.SeriesDescription = f"view: {im.view}"
    ds.PatientName = ds.PatientID = im.patient_id
    ds.PatientBirthDate, ds.PatientSex = "", im.sex
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", im.view
    ds.StudyInstanceUID, ds.SeriesInstanceUID = im.study_uid, im.series_uid
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "", "1", "1", ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [im.spacing, im.spacing]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    with disable_value_validation():          # PatientAge in plain digits, as the release writes it
        ds.PatientAge = str(im.age)
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def relative_path(im: PlannedImage) -> str:
    """Where the release keeps the DICOM of ``im``."""
    if im.part == "stage2":
        return f"stage_2_images/ID_{hashlib.sha1(im.image_id.encode()).hexdigest()[:9]}.dcm"
    folder = "dicom-images-test" if im.part == "test" else "dicom-images-train"
    return f"{folder}/{im.study_uid}/{im.series_uid}/{im.image_id}.dcm"


def _render(args) -> dict[str, list[np.ndarray]]:
    """Render and write one patient's DICOMs; return each positive image's mask(s)."""
    images, size, seed, root, stage = args
    anatomy = sample_anatomy(np.random.default_rng([seed, 42, images[0].patient]))
    out = {}
    for im in images:
        if im.part == "stage2" and stage != 2:
            continue
        r = np.random.default_rng([seed, 43, im.patient, im.follow_up])
        an = anatomy if im.follow_up == 0 else jitter_anatomy(anatomy, r)
        state = r.bit_generator.state
        drawn = render_phantom([*im.distractors, *(("Pneumothorax",) if im.positive else ())], size, r, an).image
        if im.positive:
            r.bit_generator.state = state
            found = mask_rows(drawn, render_phantom(list(im.distractors), size, r, an).image, im.two_masks)
            out[im.image_id] = [m for m in found if m.any()]      # (none empty at 32 px and up)
        with atomic.atomic_path(Path(root) / relative_path(im)) as tmp:
            Path(tmp).write_bytes(dicom_bytes(im, drawn))
    return out


def write_dataset(out_dir, n_images: int = 600, n_patients: int | None = None, size: int = 256, seed: int = 0,
                  workers: int | None = None, stage: int = 1, rle: str = "relative") -> dict:
    """Write the phantom release into ``out_dir`` and return counts: the stage-1 layout, or with
    ``stage=2`` the stage-2 one; ``rle`` is the label file's run-length flavour (``relative``, the
    competition's, or ``absolute``). ``n_patients`` defaults to one patient per image."""
    if stage not in (1, 2):
        raise CxrConfigError(f"unknown stage {stage!r}", key="stage", choices=(1, 2))
    if rle not in ("relative", "absolute"):
        raise CxrConfigError(f"unknown rle {rle!r}", key="rle", choices=("relative", "absolute"))
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    planned = plan(n_images, n_patients or n_images, seed)
    by_patient: dict[int, list] = {}
    for im in planned:
        by_patient.setdefault(im.patient, []).append(im)
    tasks = [(group, size, seed, str(root), stage) for group in by_patient.values()]
    drawn: dict[str, list] = {}
    with progress(total=len(tasks), desc=f"synth siim_acr (stage {stage})", unit="patient") as bar:
        for res in imap(_render, tasks, workers, chunksize=4):
            drawn.update(res)
            bar.update(1)
    listed = [im for im in planned if im.part == "train" or (stage == 2 and im.part == "test")]
    rows = [f"{im.image_id},{encode(m, rle)}" for im in listed for m in drawn.get(im.image_id, [])] + \
           [f"{im.image_id},-1" for im in listed if not drawn.get(im.image_id)]
    order = np.random.default_rng([seed, 44]).permutation(len(rows))
    layout = cards.dataset_card("siim_acr")["layout"]
    name = layout["label_files"][f"stage{stage}"]
    atomic.write_text(root / name, "\n".join([HEADERS[stage], *(rows[i] for i in order)]) + "\n")
    written = sum(im.part != "stage2" or stage == 2 for im in planned)
    info = {"images": len(listed), "patients": len({im.patient for im in listed}), "rows": len(rows),
            "positive_images": sum(bool(drawn.get(im.image_id)) for im in listed),
            "masks": sum(len(drawn.get(im.image_id, [])) for im in listed),
            "dicoms": written, "unlisted_dicoms": written - len(listed),
            "size": size, "seed": seed, "stage": stage, "rle": rle, "label_file": name}
    info["boxes"] = info["masks"]
    log.info("phantom SIIM-ACR in %s: %s", root, info)
    return info
