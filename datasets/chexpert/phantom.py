"""Write a phantom dataset in the exact CheXpert on-disk layout.

``OUT/CheXpert-v1.0-small/`` with ``train.csv`` and ``valid.csv`` in the real header (and, with
``test_set``, ``test_labels.csv`` and ``test/``, read by column names), JPEGs under
``{train,valid,test}/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg``, several studies per
patient, lateral views rendered as laterals (:mod:`cxr_tf.synth.lateral`), validation patients
numbered from 64541 and test patients from 64741 as in the release.

Labels are per study, as the CheXpert labeler's are, and take all four states in train: a finding
drawn plainly is 1.0; one drawn faintly (blended at 30-60 % strength) is -1.0, uncertain, and so
is an "ambiguous" mention with nothing drawn; an absent finding is blank (not mentioned) most of
the time and 0.0 otherwise. ``No Finding`` is 1.0 or blank. valid and test carry what a
radiologist would say, 0/1 only: faint findings are there (1), ambiguous ones are not (0). So
U-Ones and U-Zeros are each right about part of the uncertain entries, and the policies differ.

Observations are drawn with the ChestX-ray14 phantom patterns; those without a pattern of their
own borrow a distinct one (:data:`PATTERNS`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_tf.core import atomic, cards
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.core.parallel import imap
from cxr_tf.core.progress import progress
from cxr_tf.synth.lateral import render_lateral
from cxr_tf.synth.phantom import jitter_anatomy, render_phantom, sample_anatomy

log = logging.getLogger(__name__)
FOLDER = "CheXpert-v1.0-small"
HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
# CheXpert observation -> the phantom pattern drawn for it (proxies where none is its own).
PATTERNS = {
    "Enlarged Cardiomediastinum": "Hernia", "Cardiomegaly": "Cardiomegaly", "Lung Opacity": "Infiltration",
    "Lung Lesion": "Mass", "Edema": "Edema", "Consolidation": "Consolidation", "Pneumonia": "Pneumonia",
    "Atelectasis": "Atelectasis", "Pneumothorax": "Pneumothorax", "Pleural Effusion": "Effusion",
    "Pleural Other": "Pleural_Thickening", "Fracture": "Fibrosis", "Support Devices": "Emphysema",
}
VALID_FIRST, TEST_FIRST = 64541, 64741


@dataclass(frozen=True)
class Study:
    """One planned study: who, which part of the release, and the state of each observation."""

    part: str            # train, valid or test
    patient: int
    study: int
    sex: str
    age: int
    projection: str      # AP or PA (the frontal view)
    lateral: bool
    plain: tuple         # observations drawn plainly
    faint: tuple         # drawn faintly (uncertain in train, present for a radiologist)
    ambiguous: tuple     # uncertain in train, nothing drawn (absent for a radiologist)
    negated: tuple       # explicitly negative in train (0.0); the rest is blank


def plan(n_images: int, n_patients: int, seed: int, test_set: bool = False, lateral: float = 0.25,
         no_finding: float = 0.3) -> list[Study]:
    """Every study of the phantom release (deterministic for a seed); about ``n_images`` images."""
    if n_images < 4 or not 3 <= n_patients <= n_images:
        raise CxrConfigError(f"need 3 <= patients ({n_patients}) <= images ({n_images})", key="patients")
    observations = [f for f in cards.dataset_card("chexpert")["findings"] if f != "No Finding"]
    rng = np.random.default_rng([seed, 11])
    n_valid = max(1, round(0.12 * n_patients))
    n_test = max(1, round(0.12 * n_patients)) if test_set else 0
    n_train = n_patients - n_valid - n_test
    if n_train < 1:
        raise CxrConfigError(f"{n_patients} patients are too few for train, valid and test", key="patients")
    ids = ([("train", i + 1) for i in range(n_train)] + [("valid", VALID_FIRST + i) for i in range(n_valid)]
           + [("test", TEST_FIRST + i) for i in range(n_test)])
    per_image = 1 + lateral
    studies_left = max(n_patients, round(n_images / per_image))
    per_patient = 1 + rng.multinomial(studies_left - n_patients, np.full(n_patients, 1 / n_patients))
    out = []
    for (part, pid), count in zip(ids, per_patient):
        sex, age0 = str(rng.choice(["Male", "Female"])), int(rng.integers(18, 90))
        for s in range(1, count + 1):
            plain, faint, ambiguous = [], [], []
            if rng.random() >= no_finding:
                k = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
                for obs in rng.choice(observations, size=k, replace=False).tolist():
                    r = rng.random()
                    (plain if r < 0.6 else faint if r < 0.85 else ambiguous).append(obs)
            rest = [o for o in observations if o not in plain + faint + ambiguous]
            negated = [o for o in rest if rng.random() < 0.15]
            out.append(Study(part, pid, s, sex, min(age0 + s // 2, 95), "AP" if rng.random() < 0.6 else "PA",
                             bool(rng.random() < lateral), tuple(plain), tuple(faint), tuple(ambiguous),
                             tuple(negated)))
    return out


def label_cells(st: Study, observations, radiologist: bool | None = None) -> list[str]:
    """The CSV cells of one study, in ``observations`` order: the labeler's four states (train) or
    a radiologist's 0/1 (valid, test; or as ``radiologist`` says)."""
    cells = []
    radiologist = st.part != "train" if radiologist is None else radiologist
    present = set(st.plain) | set(st.faint)
    for obs in observations:
        if obs == "No Finding":
            positive = present if radiologist else present | set(st.ambiguous)
            none = not (positive - {"Support Devices"})
            cells.append(("1.0" if none else "0.0") if radiologist else ("1.0" if none else ""))
        elif radiologist:
            cells.append("1.0" if obs in present else "0.0")
        elif obs in st.plain:
            cells.append("1.0")
        elif obs in st.faint or obs in st.ambiguous:
            cells.append("-1.0")
        else:
            cells.append("0.0" if obs in st.negated else "")
    return cells


def render_study(st: Study, size: int, r: np.random.Generator, anatomy) -> tuple[np.ndarray, np.ndarray | None]:
    """The (frontal, lateral or None) uint8 images of one study: plain findings drawn fully, faint
    ones blended in at 30-60 % strength, ambiguous ones not drawn."""
    plain = [PATTERNS[o] for o in st.plain]
    state = r.bit_generator.state
    image = render_phantom(plain, size, r, anatomy).image.astype(np.float32)
    if st.faint:   # same generator state: the two renders differ only where the faint findings are
        r.bit_generator.state = state
        full = render_phantom(plain + [PATTERNS[o] for o in st.faint], size, r, anatomy).image
        alpha = np.float32(r.uniform(0.3, 0.6))
        image += alpha * (full.astype(np.float32) - image)
    lateral = render_lateral([PATTERNS[o] for o in st.plain + st.faint], size, r, anatomy) if st.lateral else None
    return np.round(image).astype(np.uint8), lateral


def patient_studies(studies, size: int, seed: int):
    """Yield (study, frontal, lateral or None) for one patient's studies, the anatomy shared and
    jittered between studies (deterministic for the seed)."""
    anatomy = sample_anatomy(np.random.default_rng([seed, 12, studies[0].patient]))
    for st in studies:
        r = np.random.default_rng([seed, 13, st.patient, st.study])
        an = anatomy if st.study == 1 else jitter_anatomy(anatomy, r)
        yield (st, *render_study(st, size, r, an))


def _render(args) -> list[tuple[str, int, int]]:
    """Render one patient's studies; returns (relative path, width, height) of each image."""
    studies, size, seed, root = args
    written = []
    for st, frontal, lateral in patient_studies(studies, size, seed):
        views = [("view1_frontal.jpg", frontal)] + ([("view2_lateral.jpg", lateral)] if st.lateral else [])
        for name, pixels in views:
            rel = f"{st.part}/patient{st.patient:05d}/study{st.study}/{name}"
            height = round(size * 1.2)      # CheXpert-small images are portrait, e.g. 320 x 390
            img = Image.fromarray(pixels, mode="L").resize((size, height), Image.Resampling.BILINEAR)
            with atomic.atomic_path(Path(root) / rel) as tmp:
                img.save(tmp, format="JPEG", quality=92)
            written.append((rel, size, height))
    return written


def write_dataset(out_dir, n_images: int = 600, n_patients: int | None = None, size: int = 256, seed: int = 0,
                  workers: int | None = None, test_set: bool = False, folder: str = FOLDER) -> dict:
    """Write the phantom release into ``out_dir/folder`` and return counts; ``info["data_dir"]``
    is the folder ``--data-dir`` takes (the one holding train.csv and valid.csv)."""
    root = Path(out_dir) / folder
    root.mkdir(parents=True, exist_ok=True)
    observations = cards.dataset_card("chexpert")["findings"]
    n_patients = n_patients or max(3, n_images // 4)
    studies = plan(n_images, n_patients, seed, test_set)
    by_patient: dict[int, list] = {}
    for st in studies:
        by_patient.setdefault(st.patient, []).append(st)
    tasks = [(group, size, seed, str(root)) for group in by_patient.values()]
    with progress(total=len(tasks), desc="synth chexpert", unit="patient") as bar:
        for _ in imap(_render, tasks, workers, chunksize=4):
            bar.update(1)
    rows = {"train": [], "valid": [], "test": []}
    for st in studies:
        cells = label_cells(st, observations)
        views = [("view1_frontal.jpg", "Frontal", st.projection)] + \
            ([("view2_lateral.jpg", "Lateral", "")] if st.lateral else [])
        for name, orientation, ap_pa in views:
            rel = f"{st.part}/patient{st.patient:05d}/study{st.study}/{name}"
            if st.part == "test":     # the 2022 test labels: no demographics, paths without the prefix
                rows["test"].append([rel, *cells])
            else:
                rows[st.part].append([f"{folder}/{rel}", st.sex, str(st.age), orientation, ap_pa, *cells])
    for part, name in (("train", "train.csv"), ("valid", "valid.csv")):
        atomic.write_text(root / name, _csv([*HEADER, *observations], rows[part]))
    if test_set:
        atomic.write_text(root / "test_labels.csv", _csv(["Path", *observations], rows["test"]))
    info = {"images": sum(map(len, rows.values())), "patients": len(by_patient), "studies": len(studies),
            "train_images": len(rows["train"]), "valid_images": len(rows["valid"]),
            "test_images": len(rows["test"]), "size": size, "seed": seed, "data_dir": str(root)}
    log.info("phantom CheXpert in %s: %s", root, info)
    return info


def _csv(header, rows) -> str:
    """CSV text (the release quotes nothing; no cell here holds a comma)."""
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"
