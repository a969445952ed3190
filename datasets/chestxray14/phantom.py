"""Write a phantom dataset in the exact NIH ChestX-ray14 on-disk layout.

``Data_Entry_2017_v2020.csv`` (real v2020 header; or the 2017 one with its trailing commas),
``BBox_List_2017.csv`` (real header, ``Infiltrate`` spelling, boxes in the 1024-pixel frame),
``train_val_list.txt`` / ``test_list.txt`` (patient-disjoint, no final newline) and PNGs under
``images_001/images/`` ... ``images_012/images/``. Patients have several follow-up images, and
about a third of images are ``No Finding``. Output is byte-identical for a seed, whatever the
number of worker processes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_tf.core import atomic, cards
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.core.parallel import imap
from cxr_tf.core.progress import progress
from cxr_tf.synth.phantom import jitter_anatomy, render_phantom, sample_anatomy

log = logging.getLogger(__name__)
HEADER_V2020 = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
# (width, height, spacing) of the original DICOMs, as in real Data_Entry rows
_DICOM_GEOMETRY = ((2500, 2048, 0.168), (2992, 2991, 0.143), (3056, 2544, 0.139),
                   (2021, 2021, 0.194311), (2682, 2749, 0.143))
_BOX_SPELLING = {"Infiltration": "Infiltrate"}


@dataclass(frozen=True)
class PlannedImage:
    """One image of the phantom dataset, decided before any pixel is drawn."""

    name: str
    patient: int
    follow_up: int
    findings: tuple
    age: int
    sex: str
    view: str
    dicom: tuple
    test: bool


def plan(n_images: int, n_patients: int, seed: int, no_finding: float = 0.35) -> list[PlannedImage]:
    """Patients, follow-ups, labels and demographics of every image (deterministic for a seed)."""
    if n_images < 1 or not 1 <= n_patients <= n_images:
        raise CxrConfigError(f"need 1 <= patients ({n_patients}) <= images ({n_images})", key="patients")
    findings = cards.dataset_card("chestxray14")["findings"]
    rng = np.random.default_rng([seed, 1])
    per_patient = 1 + rng.multinomial(n_images - n_patients, np.full(n_patients, 1 / n_patients))
    test_patients = set(rng.permutation(n_patients)[: max(1, round(0.2 * n_patients))] + 1)
    out = []
    for pid, count in enumerate(per_patient, start=1):
        age0, sex = int(rng.integers(18, 86)), str(rng.choice(["M", "F"]))
        dicom = _DICOM_GEOMETRY[int(rng.integers(len(_DICOM_GEOMETRY)))]
        for fu in range(count):
            if rng.random() < no_finding:
                labels: tuple = ()
            else:
                k = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
                labels = tuple(sorted(rng.choice(findings, size=k, replace=False).tolist()))
            out.append(PlannedImage(f"{pid:08d}_{fu:03d}.png", pid, fu, labels,
                                    min(age0 + fu // 2, 95), sex,
                                    "PA" if rng.random() < 0.75 else "AP", dicom,
                                    pid in test_patients))
    return out


def _render(args) -> dict:
    """Render and write one patient's images; return their boxes in the 1024-pixel frame."""
    images, size, seed, folders, out_dir, bbox_frame = args
    rng = np.random.default_rng([seed, 2, images[0].patient])
    anatomy = sample_anatomy(rng)
    boxes = {}
    for img in images:
        rng_img = np.random.default_rng([seed, 3, img.patient, img.follow_up])
        anat = anatomy if img.follow_up == 0 else jitter_anatomy(anatomy, rng_img)
        ph = render_phantom(img.findings, size, rng_img, anat)
        path = Path(out_dir) / folders[img.name] / img.name
        with atomic.atomic_path(path) as tmp:
            Image.fromarray(ph.image, mode="L").save(tmp, format="PNG", compress_level=3)
        scale = bbox_frame / size
        boxes[img.name] = {f: tuple(v * scale for v in b) for f, b in ph.boxes.items()}
    return boxes


def write_dataset(out_dir, n_images: int = 600, n_patients: int | None = None, size: int = 256,
                  seed: int = 0, release: str = "v2020", workers: int | None = None,
                  render_limit: int | None = None) -> dict:
    """Write the phantom dataset into ``out_dir`` and return counts.

    ``release``: ``"v2020"`` writes ``Data_Entry_2017_v2020.csv``; ``"2017"`` writes
    ``Data_Entry_2017.csv`` with the original release's trailing comma on every line.
    ``render_limit``: draw only the first N images (a partial download: the label file and lists
    still list every image; the box list covers the drawn ones).
    """
    if release not in ("v2020", "2017"):
        raise CxrConfigError(f"unknown release {release!r}", key="release", choices=("v2020", "2017"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = cards.dataset_card("chestxray14")
    frame = float(card["layout"]["bbox_frame"])
    box_findings = set(card["layout"]["bbox_findings"])
    n_patients = n_patients or max(1, n_images // 3)
    planned = plan(n_images, n_patients, seed)
    per_folder = math.ceil(len(planned) / card["layout"]["image_archives"])
    folders = {p.name: f"images_{i // per_folder + 1:03d}/images" for i, p in enumerate(planned)}
    by_patient: dict[int, list] = {}
    for p in planned[:render_limit]:
        by_patient.setdefault(p.patient, []).append(p)
    tasks = [(imgs, size, seed, folders, str(out), frame) for imgs in by_patient.values()]
    boxes: dict = {}
    with progress(total=sum(map(len, by_patient.values())), desc="synth chestxray14",
                  unit="img") as bar:
        for res in imap(_render, tasks, workers, chunksize=4):
            boxes.update(res)
            bar.update(len(res))

    trailing = "," if release == "2017" else ""
    rows = [HEADER_V2020 + trailing]
    for p in planned:
        labels = "|".join(p.findings) or card["no_finding"]
        rows.append(f"{p.name},{labels},{p.follow_up},{p.patient},{p.age},{p.sex},{p.view},"
                    f"{p.dicom[0]},{p.dicom[1]},{p.dicom[2]},{p.dicom[2]}{trailing}")
    name = "Data_Entry_2017_v2020.csv" if release == "v2020" else "Data_Entry_2017.csv"
    atomic.write_text(out / name, "\n".join(rows) + "\n")
    bbox_rows = [BBOX_HEADER]
    for p in planned:
        if p.test and p.name in boxes:
            for f in p.findings:
                if f in box_findings:
                    x, y, w, h = boxes[p.name][f]
                    bbox_rows.append(f"{p.name},{_BOX_SPELLING.get(f, f)},{x!r},{y!r},{w!r},{h!r}")
    atomic.write_text(out / card["layout"]["bbox_file"], "\n".join(bbox_rows) + "\n")
    atomic.write_text(out / card["layout"]["train_val_list"],
                      "\n".join(p.name for p in planned if not p.test))
    atomic.write_text(out / card["layout"]["test_list"], "\n".join(p.name for p in planned if p.test))
    info = {"images": len(planned), "patients": len({p.patient for p in planned}),
            "drawn": len(boxes), "boxes": len(bbox_rows) - 1,
            "test_images": sum(p.test for p in planned), "size": size, "seed": seed}
    log.info("phantom ChestX-ray14 in %s: %s", out, info)
    return info
