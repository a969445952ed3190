"""Write a phantom PadChest release in the exact on-disk layout.

``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz`` in the real header (36 columns, the
first an unnamed row index) and format: ``Labels``, ``Localizations`` and
``LabelsLocalizationsBySentence`` as Python-list text, terms after the first often with a leading
space, the CUI columns as NumPy array text wrapped onto a second line after six codes, ``nan`` and
``None`` where the release writes them, a stemmed Spanish report, realistic ids (a 38-39 digit
PatientID; StudyID and ImageID in the release's two styles). Images are 16-bit grayscale PNGs
(12 or 10 significant bits, as BitsStored_DICOM says) under ``<ImageDir>/<ImageID>``, the folders
numbered as the release's archives (0, 1, ... and 54).

Patients have several studies; a study is a PA with a lateral, or one PA, AP, AP_horizontal or
COSTAL image, all sharing the report's labels. Terms with a ChestX-ray14 counterpart are drawn by
:mod:`cxr_tf.synth` (laterals by :mod:`cxr_tf.synth.lateral`); the others (``COPD signs``,
``unchanged``, ``NSG tube`` ...) are listed but not drawn. The release's quirks are planted in
later studies (a patient's first study is always a labelled PA) once there are enough of them (a
few dozen images): a row without labels (``nan``, no report), ``['']`` and ``['exclude']`` rows,
EXCLUDE and UNK projections, a blank PatientBirth, a ``nan`` sex, a child, a repeated term.
Output is byte-identical for a seed, whatever the number of worker processes.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import zlib
from dataclasses import dataclass, replace
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
HEADER = ["", "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth", "PatientSex_DICOM",
          "ViewPosition_DICOM", "Projection", "MethodProjection", "Pediatric", "Modality_DICOM", "Manufacturer_DICOM",
          "PhotometricInterpretation_DICOM", "PixelRepresentation_DICOM", "PixelAspectRatio_DICOM",
          "SpatialResolution_DICOM", "BitsStored_DICOM", "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM",
          "Columns_DICOM", "XRayTubeCurrent_DICOM", "Exposure_DICOM", "ExposureInuAs_DICOM", "ExposureTime",
          "RelativeXRayExposure_DICOM", "ReportID", "Report", "MethodLabel", "Labels", "Localizations",
          "LabelsLocalizationsBySentence", "labelCUIS", "LocalizationsCUIS"]
# PadChest term -> (the phantom pattern drawn for it, its stemmed Spanish phrase, its localization).
DRAWN = {
    "atelectasis": ("Atelectasis", "atelectasi", "loc basal"),
    "laminar atelectasis": ("Atelectasis", "atelectasi laminar", "loc basal"),
    "lobar atelectasis": ("Atelectasis", "atelectasi lobar", "loc lower lobe"),
    "cardiomegaly": ("Cardiomegaly", "cardiomegali", "loc cardiac"),
    "pleural effusion": ("Effusion", "derram pleural", "loc costophrenic angle"),
    "loculated pleural effusion": ("Effusion", "derram pleural loculado", "loc pleural"),
    "infiltrates": ("Infiltration", "infiltr", "loc basal"),
    "pulmonary mass": ("Mass", "mas pulmonar", "loc upper lobe"),
    "nodule": ("Nodule", "nodul", "loc middle lobe"),
    "pneumonia": ("Pneumonia", "neumoni", "loc lower lobe"),
    "pneumothorax": ("Pneumothorax", "neumotorax", "loc apical"),
    "consolidation": ("Consolidation", "condensacion", "loc lower lobe"),
    "pulmonary edema": ("Edema", "edem pulmonar", "loc perihilar"),
    "emphysema": ("Emphysema", "enfisem", "loc upper lobe"),
    "pulmonary fibrosis": ("Fibrosis", "fibrosis pulmonar", "loc basal bilateral"),
    "pleural thickening": ("Pleural_Thickening", "engros pleural", "loc pleural"),
    "apical pleural thickening": ("Pleural_Thickening", "engros pleural apical", "loc apical"),
    "hiatal hernia": ("Hernia", "hernia hiat", "loc retrocardiac"),
}
# Listed, not drawn (frequent in the release): term -> stemmed Spanish phrase.
UNDRAWN = {"COPD signs": "sign epoc", "unchanged": "sin cambi respect estudi previ", "scoliosis": "escoliosis",
           "aortic elongation": "elong aortic", "chronic changes": "cambi cronic", "kyphosis": "cifosis",
           "NSG tube": "sond nasogastr", "callus rib fracture": "callo fractur costal",
           "suboptimal study": "estudi suboptim", "vertebral degenerative changes": "cambi degener column"}
SIDES = ("loc left", "loc right")
# (Manufacturer, Modality, PixelAspectRatio, SpatialResolution, Rows, Columns) as in real rows
MACHINES = (("ImagingDynamicsCompanyLtd", "CR", "None", "None", 2000, 2000),
            ("ImagingDynamicsCompanyLtd", "CR", "None", "None", 3296, 3236),
            ("PhilipsMedicalSystems", "CR", "['1', '1']", "0.2", 1760, 2140),
            ("PhilipsMedicalSystems", "DX", "['1', '1']", "0.143", 2968, 2973))
VIEW_POSITION = {"PA": ("POSTEROANTERIOR", "PA", "nan"), "L": ("LATERAL", "LL", "nan"),
                 "AP": ("ANTEROPOSTERIOR", "AP", "nan"), "AP_horizontal": ("nan",), "COSTAL": ("nan",),
                 "EXCLUDE": ("OBLICUA",), "UNK": ("nan",)}
KINDS = (("PA", "L"), ("PA",), ("AP_horizontal",), ("AP",), ("COSTAL",))
KIND_P = (0.5, 0.15, 0.17, 0.1, 0.08)


@dataclass(frozen=True)
class Study:
    """One planned study: its patient, ids, report labels and images (projection per image)."""

    patient: int
    number: int          # the patient's n-th study, from 1
    patient_id: str
    study_id: str
    suffixes: tuple      # the ImageID of each image is f"{study_id}_{suffix}.png"
    projections: tuple
    date: str
    birth: str
    sex: str
    machine: int
    bits: int
    physician: bool
    drawn: tuple         # DRAWN terms (drawn and listed)
    undrawn: tuple       # UNDRAWN terms (listed only)
    labels: str = "list"  # "list", or a quirk: "nan" (no report), "empty" (['']) or "exclude"


def _ids(rng: np.random.Generator, style: int) -> tuple[str, list[str]]:
    """A StudyID and a generator of image suffixes in one of the release's two id styles."""
    if style == 0:
        study = "2168401113669640" + "".join(map(str, rng.integers(0, 10, 29)))
        return study, [f"{int(rng.integers(0, 5)):02d}-{int(rng.integers(0, 200)):03d}-{int(rng.integers(0, 200)):03d}"
                       for _ in range(2)]
    study = str(int(rng.integers(1, 9))) + "".join(map(str, rng.integers(0, 10, 37)))
    alphabet = np.array(list("0123456789abcdefghijklmnopqrstuvwxyz"))
    return study, ["".join(rng.choice(alphabet, 6)) for _ in range(2)]


def _labels(rng: np.random.Generator, normal: float) -> tuple[tuple, tuple]:
    """The (drawn, undrawn) terms of one report; both empty means ``['normal']``."""
    if rng.random() < normal:
        return (), ()
    drawn, undrawn, patterns = [], [], set()
    for _ in range(int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))):
        if rng.random() < 0.75:
            term = str(rng.choice(list(DRAWN)))
            if DRAWN[term][0] not in patterns:
                drawn.append(term)
                patterns.add(DRAWN[term][0])
        else:
            term = str(rng.choice(list(UNDRAWN)))
            if term not in undrawn:
                undrawn.append(term)
    return tuple(drawn), tuple(undrawn)


def plan(n_images: int, n_patients: int, seed: int, normal: float = 0.3) -> list[Study]:
    """Every study of the phantom release (deterministic for a seed), exactly ``n_images`` images;
    a patient's first study always has a PA view and a labelled report."""
    if n_images < 2 or not 1 <= n_patients <= n_images:
        raise CxrConfigError(f"need 1 <= patients ({n_patients}) <= images ({n_images})", key="patients")
    rng = np.random.default_rng([seed, 41])
    budget = 1 + rng.multinomial(n_images - n_patients, np.full(n_patients, 1 / n_patients))
    out = []
    for p, left in enumerate(budget.tolist()):
        patient_id = str(int(rng.integers(1, 4))) + "".join(map(str, rng.integers(0, 10, int(rng.integers(37, 39)))))
        birth, sex = int(rng.integers(1925, 1995)), str(rng.choice(["M", "F"]))
        year, day = int(rng.integers(2009, 2016)), int(rng.integers(1, 300))
        number = 0
        while left > 0:
            number += 1
            kind = KINDS[0] if number == 1 else KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
            kind = kind[:left]
            study_id, suffixes = _ids(rng, int(rng.random() < 0.2))
            day += int(rng.integers(20, 400))
            date = f"{min(2017, year + day // 365)}{1 + (day % 365) // 31:02d}{1 + (day % 365) % 28:02d}"
            out.append(Study(p, number, patient_id, study_id, tuple(suffixes[:len(kind)]), kind, date, f"{birth}.0",
                             sex, int(rng.integers(len(MACHINES))), 10 if rng.random() < 0.1 else 12,
                             bool(rng.random() < 0.25), *_labels(rng, normal)))
            left -= len(kind)
    return _quirks(out) if n_images >= 12 else out


def _quirks(studies: list[Study]) -> list[Study]:
    """Plant the release's quirks in later studies (never a patient's first one) and patients."""
    later = [i for i, s in enumerate(studies) if s.number > 1]
    for i, quirk in zip(later, ("nan", "empty", "exclude")):
        studies[i] = replace(studies[i], labels=quirk, physician=quirk == "exclude" and studies[i].physician)
    pairs = [i for i in later[3:] if studies[i].projections == ("PA", "L")]
    for i, odd in zip(pairs, ("EXCLUDE", "UNK")):
        studies[i] = replace(studies[i], projections=("PA", odd))
    n = max(s.patient for s in studies) + 1
    for i, s in enumerate(studies):
        year = int(s.date[:4])
        if s.patient == 1 % n:
            studies[i] = replace(s, birth="")                      # blank PatientBirth
        elif s.patient == 2 % n:
            studies[i] = replace(s, sex="nan")                    # PatientSex_DICOM "nan"
        elif s.patient == 3 % n:
            studies[i] = replace(s, birth=f"{year - 9}.0")        # a child
    for i, s in enumerate(studies):
        if s.labels == "list" and len(s.drawn) + len(s.undrawn) >= 2:
            studies[i] = replace(s, undrawn=(*s.undrawn, (s.drawn + s.undrawn)[0]))   # a repeated term
            break
    return studies


def _cuis(codes: list[str]) -> str:
    """NumPy's text of an array of CUI strings: six per line, the rest on a continuation line."""
    quoted = [f"'{c}'" for c in codes]
    lines = [" ".join(quoted[k:k + 6]) for k in range(0, len(quoted), 6)]
    return "[" + "\n ".join(lines) + "]"


def _cui(term: str) -> str:
    """A stable made-up UMLS-like code for a term."""
    return f"C{zlib.crc32(term.encode()) % 10_000_000:07d}"


def report_cells(s: Study, rng: np.random.Generator) -> list[str]:
    """Report, MethodLabel, Labels, Localizations, LabelsLocalizationsBySentence, labelCUIS and
    LocalizationsCUIS of one study, as the release writes them."""
    method = "Physician" if s.physician else "RNN_model"
    if s.labels == "nan":
        return ["nan", "RNN_model", "nan", "nan", "nan", "", ""]
    terms = list(s.drawn + s.undrawn)
    phrases = {**{t: v[1] for t, v in DRAWN.items()}, **UNDRAWN}
    if s.labels == "exclude":
        return [" i presion", method, "['exclude']", "[]", "[['exclude']]", "[]", "[]"]
    if s.labels == "empty":
        return [" " + " . ".join(phrases[t] for t in terms) + " ." if terms else " estabil lesion .", method,
                "['']", "['loc left']", "['', 'loc left']", "['']", f"['{_cui('loc left')}']"]
    if not terms:
        return [" sin hallazg patolog edad pacient .", method, "['normal']", "[]", "[['normal'], ['normal']]", "[]",
                "[]"]
    locs, sentences = [], []
    for t in dict.fromkeys(terms):
        where = [DRAWN[t][2], SIDES[int(rng.integers(2))]] if t in DRAWN else []
        sentences.append([t, *where])
        locs += [x for x in where if x not in locs]
    listed = [t if k == 0 or rng.random() < 0.6 else " " + t for k, t in enumerate(terms)]
    return [" " + " . ".join(phrases[t] for t in dict.fromkeys(terms)) + " .", method, repr(listed), repr(locs),
            repr(sentences), _cuis([_cui(t) for t in dict.fromkeys(terms)]), _cuis([_cui(x) for x in locs])]


def image_cells(s: Study, projection: str, rng: np.random.Generator) -> list[str]:
    """The acquisition columns of one image (PatientBirth ... RelativeXRayExposure_DICOM)."""
    maker, modality, aspect, spacing, rows, cols = MACHINES[s.machine]
    age = int(s.date[:4]) - int(float(s.birth)) if s.birth else 99
    views = VIEW_POSITION[projection]
    center, width = ("2047.0", "4095.0") if s.bits == 12 else ("5.115000e+02", "1023.0")
    exposure = ("None", "None", "None", "None") if rng.random() < 0.3 else \
        (str(int(rng.choice([250, 320, 400]))), str(int(rng.choice([2, 3, 10]))), str(int(rng.choice([2500, 3200]))),
         str(int(rng.choice([10, 25]))))
    return [s.birth, s.sex, str(views[int(rng.integers(len(views)))]), projection,
            "Manual review of DICOM fields" if rng.random() < 0.9 else "resnet-50.t7",
            "PED" if age < 12 else "No", modality, maker, "MONOCHROME2", "0", aspect, spacing, str(s.bits), center,
            width, str(rows), str(cols), *exposure[:3], exposure[3],
            "None" if rng.random() < 0.2 else f"{rng.uniform(-1.5, 1.5):.2f}"]


def _pixels(s: Study, projection: str, size: int, r: np.random.Generator, anatomy) -> np.ndarray:
    """The 16-bit pixels of one image: the study's drawn terms rendered, resized to the original
    aspect ratio and scaled to BitsStored significant bits."""
    patterns = list(dict.fromkeys(DRAWN[t][0] for t in s.drawn))
    if projection == "L":
        gray = render_lateral(patterns, size, r, anatomy)
    else:
        gray = render_phantom(patterns, size, r, anatomy).image
    _, _, _, _, rows, cols = MACHINES[s.machine]
    img = Image.fromarray(gray, mode="L").resize((size, max(8, round(size * rows / cols))), Image.Resampling.BILINEAR)
    scale = (2 ** s.bits - 1) / 255.0
    return np.round(np.asarray(img, dtype=np.float64) * scale).astype(np.uint16)


def _render(args) -> int:
    """Render and write one patient's images; returns how many."""
    studies, size, seed, root, folders = args
    anatomy = sample_anatomy(np.random.default_rng([seed, 42, studies[0].patient]))
    n = 0
    for s in studies:
        r = np.random.default_rng([seed, 43, s.patient, s.number])
        an = anatomy if s.number == 1 else jitter_anatomy(anatomy, r)
        for suffix, projection in zip(s.suffixes, s.projections):
            image_id = f"{s.study_id}_{suffix}.png"
            with atomic.atomic_path(Path(root) / folders[image_id] / image_id) as tmp:
                Image.fromarray(_pixels(s, projection, size, r, an)).save(tmp, format="PNG", compress_level=3)
            n += 1
    return n


def write_dataset(out_dir, n_images: int = 400, n_patients: int | None = None, size: int = 256, seed: int = 0,
                  workers: int | None = None, gzipped: bool = True) -> dict:
    """Write the phantom release into ``out_dir`` (the folder ``--data-dir`` takes) and return counts.
    ``gzipped=False`` writes the label file as plain CSV."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = cards.dataset_card("padchest")["layout"]
    n_patients = n_patients or max(1, n_images // 4)
    studies = plan(n_images, n_patients, seed)
    ids = [f"{s.study_id}_{x}.png" for s in studies for x in s.suffixes]
    names = [*map(str, range(51)), "54"]
    per_folder = max(4, -(-len(ids) // len(names)))
    used = -(-len(ids) // per_folder)
    numbers = names[:used - 1] + ["54"] if used > 2 else names[:used]
    folders = {image_id: numbers[k // per_folder] for k, image_id in enumerate(ids)}
    by_patient: dict[int, list] = {}
    for s in studies:
        by_patient.setdefault(s.patient, []).append(s)
    tasks = [(group, size, seed, str(out), folders) for group in by_patient.values()]
    with progress(total=len(ids), desc="synth padchest", unit="img") as bar:
        for n in imap(_render, tasks, workers, chunksize=2):
            bar.update(n)
    rows, rng = [], np.random.default_rng([seed, 44])
    for s in studies:
        report = report_cells(s, rng)
        report_id = str(int(rng.integers(1_000_000, 9_999_999)))
        for suffix, projection in zip(s.suffixes, s.projections):
            image_id = f"{s.study_id}_{suffix}.png"
            rows.append([str(len(rows)), image_id, folders[image_id], s.date, s.study_id, s.patient_id,
                         *image_cells(s, projection, rng), report_id, *report])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([HEADER, *rows])
    name = layout["label_files"][0]
    with atomic.atomic_path(out / (f"{name}.gz" if gzipped else name)) as tmp:
        data = buf.getvalue().encode("utf-8")
        Path(tmp).write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    info = {"images": len(ids), "patients": len(by_patient), "studies": len(studies),
            "folders": len(set(folders.values())), "unlabelled_images": sum(len(s.suffixes) for s in studies
                                                                              if s.labels != "list"),
            "size": size, "seed": seed}
    log.info("phantom PadChest in %s: %s", out, info)
    return info
