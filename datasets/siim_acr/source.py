"""SIIM-ACR Pneumothorax on disk (see ``datasets/siim_acr/card.toml``) -> manifest, masks, boxes, missing files.

Reads both layouts, detected from the label file: stage 1 (``train-rle.csv``, header
``ImageId, EncodedPixels`` with its space) and stage 2 (``stage_2_train.csv``), plain or gzipped, in
``data_dir`` or in the mirror's ``siim-acr-pneumothorax-segmentation/`` subfolder. DICOMs are found
by name (``<ImageId>.dcm``) anywhere under ``dicom-images-train/``, ``dicom-images-test/`` (nested
``<study UID>/<series UID>/`` folders) and ``stage_2_images/``; DICOMs the label file does not list
(stage 1's test images, a few unlabelled training files) are counted, not read.

One manifest row per listed image: ``Pneumothorax`` is 1 when the image has a mask row and 0 when
its row says ``-1``. Every mask row becomes one row of ``masks`` (canonical run-length text of
:mod:`cxr_tf.imaging.masks`, converted exactly from the competition's relative encoding) and one
box (its tight box in the file's own pixels). A mask's frame is the DICOM's Columns x Rows when the
file is on disk, else the card's 1024 x 1024. Patient, study, view, age and sex come from the DICOM
header (PatientID, StudyInstanceUID, ViewPosition, PatientAge, PatientSex); for an image whose
DICOM is absent the ImageId stands in for patient and study.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError, CxrImageError
from cxr_tf.core.progress import progress
from cxr_tf.sources import splits
from cxr_tf.sources.base import (BOX_COLUMNS, MASK_COLUMNS, SourceData, begin, find_file, finish, open_text,
                                 random_split)
from cxr_tf.sources.base import card as _card

log = logging.getLogger(__name__)
NAME = "siim_acr"
OPTIONS = {
    "release": "auto (default), stage1 or stage2: which label file to read (train-rle.csv or stage_2_train.csv)",
    "rle": "auto (default), relative (the competition's) or absolute (Kaggle's standard, 1-based): the "
           "label file's run-length flavour",
    "patient": "dicom (default): the DICOM PatientID of files on disk; image: the ImageId for every image "
               "(splits then do not depend on which DICOMs are on disk)",
    "fractions": "random split: patient fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
}
RELEASES = ("auto", "stage1", "stage2")
FLAVOURS = ("auto", "relative", "absolute")
PATIENTS = ("dicom", "image")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([YMWD]?)\s*$", re.IGNORECASE)
_AGE_UNIT = {"": 1.0, "Y": 1.0, "M": 12.0, "W": 52.0, "D": 365.0}


def card() -> dict:
    """The SIIM-ACR dataset card."""
    return _card(NAME)


def find_labels(data_dir: Path, release: str = "auto") -> tuple[Path, str]:
    """The label file and its layout (``stage1`` or ``stage2``); with both present, stage 2 (which
    also labels stage 1's test images) is read. A clear error when there is none."""
    layout = card()["layout"]
    if release not in RELEASES:
        raise CxrConfigError(f"unknown release {release!r}", key="release", choices=RELEASES)
    wanted = ("stage2", "stage1") if release == "auto" else (release,)
    for stage in wanted:
        for folder in layout["label_dirs"]:
            path = find_file(data_dir / folder, layout["label_files"][stage])
            if path is not None:
                return path, stage
    names = " or ".join(layout["label_files"][s] for s in wanted)
    raise CxrDataError(data_dir, f"no label file: expected {names} (.gz accepted) in the folder or in "
                                 f"{'/'.join(layout['label_dirs'][1:])}/")


def read_labels(path: Path) -> pd.DataFrame:
    """The label file -> one row per line: ``line``, ``image_id`` and ``rle`` (the stripped cell:
    ``-1`` or run-length pairs). Header names are matched stripped; errors name the file and line."""
    cols, no_mask = card()["layout"]["columns"], card()["layout"]["no_mask"]
    with open_text(path) as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise CxrDataError(path, "empty label file")
    header = [h.strip() for h in rows[0]]
    absent = [c for c in (cols["image"], cols["rle"]) if c not in header]
    if absent:
        raise CxrDataError(path, f"missing column(s) {absent}; header is {rows[0]}")
    at_id, at_rle = header.index(cols["image"]), header.index(cols["rle"])
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CxrDataError(path, f"line {lineno} has {len(row)} fields, the header {len(header)}")
        image_id, cell = row[at_id].strip(), row[at_rle].strip()
        if not image_id:
            raise CxrDataError(path, f"line {lineno}: empty {cols['image']}")
        if cell != no_mask and not re.fullmatch(r"\d+(?:\s+\d+)*", cell):
            raise CxrDataError(path, f"line {lineno}: {cols['rle']} is {cell[:40]!r}; allowed: {no_mask} "
                                     "(no pneumothorax) or run-length pairs of non-negative integers")
        out.append((lineno, image_id, cell))
    frame = pd.DataFrame(out, columns=["line", "image_id", "rle"])
    positive = frame[frame["rle"] != no_mask]
    mixed = frame[(frame["rle"] == no_mask) & frame["image_id"].isin(set(positive["image_id"]))]
    if len(mixed):
        first = mixed.iloc[0]
        raise CxrDataError(path, f"line {first['line']}: {first['image_id']} is {no_mask} (no pneumothorax) "
                                 "but has a mask on another line")
    return frame


def _runs(text: str, flavour: str) -> tuple[np.ndarray, np.ndarray]:
    """Run-length text -> (0-based absolute starts, lengths) as the flavour reads it (an odd number
    of values gives no runs, which :func:`_problem` refuses)."""
    values = np.array(text.split(), dtype=np.int64)
    if values.size % 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first, lengths = values[0::2], values[1::2]
    if flavour == "relative":
        before = np.concatenate([[0], np.cumsum(first + lengths)[:-1]])
        return before + first, lengths
    return first - 1, lengths


def _problem(starts: np.ndarray, lengths: np.ndarray, width: int, height: int) -> str | None:
    """Why runs are not a mask of a ``width`` x ``height`` image, or None."""
    if not len(starts):
        return "an odd number of values"
    if (lengths <= 0).any():
        return "a run of length 0"
    ends = starts + lengths
    if starts[0] < 0 or (starts[1:] < ends[:-1]).any():
        return "overlapping or unordered runs"
    if ends[-1] > width * height:
        return f"runs outside a {width}x{height} image"
    return None


def decode_runs(masks: pd.DataFrame, wanted: str, path: Path) -> tuple[str, list]:
    """The run-length flavour of the file and every mask row's (starts, lengths): ``wanted``, or
    (``auto``) relative unless some mask is not a valid relative one while every mask is a valid
    absolute one. ``masks`` has ``line``, ``rle``, ``width`` and ``height``; errors name the file and line."""
    bad = {}
    for flavour in ("relative", "absolute") if wanted == "auto" else (wanted,):
        runs = []
        for row in masks.itertuples(index=False):
            runs.append(_runs(row.rle, flavour))
            problem = _problem(*runs[-1], row.width, row.height)
            if problem:
                bad[flavour] = (row.line, problem)
                break
        if flavour not in bad:
            if flavour != card()["layout"]["rle"]:
                log.info("%s: the masks read as %s run-length pairs, not %s", path, flavour, card()["layout"]["rle"])
            return flavour, runs
    flavour = "relative" if wanted == "auto" else wanted
    line, problem = bad[flavour]
    raise CxrDataError(path, f"line {line}: the mask read as {flavour} run-length pairs has {problem}")


def mask_box(starts: np.ndarray, lengths: np.ndarray, height: int) -> tuple[float, float, float, float]:
    """The tight ``(x, y, w, h)`` pixel box of column-major runs over an image ``height`` pixels tall
    (without decoding the mask: a run that wraps to the next column spans the full height)."""
    ends = starts + lengths - 1
    x0, x1 = starts // height, ends // height
    wraps = x1 > x0
    y0 = np.where(wraps, 0, starts % height).min()
    y1 = np.where(wraps, height - 1, ends % height).max()
    return float(x0.min()), float(y0), float(x1.max() - x0.min() + 1), float(y1 - y0 + 1)


def index_images(data_dir: Path) -> dict[str, Path]:
    """Map ImageId -> DICOM path over the card's image folders, searched recursively (first found wins)."""
    found: dict[str, Path] = {}
    for folder in card()["layout"]["image_dirs"]:
        for path in sorted((data_dir / folder).rglob("*.dcm")):
            if path.stem in found:
                log.warning("%s also at %s; using %s", path.stem, path, found[path.stem])
                continue
            found[path.stem] = path
    return found


def _age(text: str) -> float:
    """A DICOM PatientAge (``62``, ``062Y``, ``8M``) in years, NaN when unreadable."""
    m = _AGE.match(text or "")
    return float(m.group(1)) / _AGE_UNIT[m.group(2).upper()] if m else np.nan


def _headers(paths: dict[str, Path]) -> dict[str, dict]:
    """The header fields used of each present DICOM (an unreadable header is logged and skipped:
    the image stays listed and prepare reports it unreadable)."""
    from cxr_tf.dicom.display import read_header

    out, mismatched = {}, 0
    for image_id, path in progress(list(paths.items()), desc="siim_acr: DICOM headers", unit="file"):
        try:
            h = read_header(path)
        except CxrImageError as exc:
            log.warning("%s", exc)
            continue
        mismatched += bool(h["sop_uid"]) and h["sop_uid"] != image_id
        out[image_id] = h
    if mismatched:
        log.warning("%d DICOM(s) have a SOPInstanceUID other than their file name; the file name is the ImageId",
                    mismatched)
    return out


def _int(text, default: int) -> int:
    text = str(text).strip()
    return int(text) if text.isdigit() and int(text) > 0 else default


def load(data_dir, split: str = "official", seed: int | None = None, release: str = "auto", rle: str = "auto",
         patient: str = "dicom", fractions=None) -> SourceData:
    """Read a SIIM-ACR folder into a split manifest, its masks and boxes, and the missing DICOMs.
    ``split="official"`` is the card's fixed-seed patient-level split (``seed`` does not change it);
    ``"random"`` draws one with ``seed`` and ``fractions``. Options: see :data:`OPTIONS`."""
    data_dir, c, vocab, seed = begin(NAME, data_dir, seed)
    layout, split_cfg = c["layout"], c["splits"]
    for key, value, allowed in (("rle", rle, FLAVOURS), ("patient", patient, PATIENTS)):
        if value not in allowed:
            raise CxrConfigError(f"unknown {key} {value!r}", key=key, choices=allowed)
    label_file, stage = find_labels(data_dir, release)
    rows = read_labels(label_file)
    images = list(dict.fromkeys(rows["image_id"]))
    on_disk = index_images(data_dir)
    paths = {i: on_disk[i] for i in images if i in on_disk}
    headers = _headers(paths)
    blank = {"patient_id": "", "study_uid": "", "view": "", "age": "", "sex": "", "rows": "", "columns": ""}
    info = [headers.get(i, blank) for i in images]
    sizes = {i: (_int(h["columns"], layout["width"]), _int(h["rows"], layout["height"])) for i, h in zip(images, info)}

    mask_rows = rows[rows["rle"] != layout["no_mask"]].reset_index(drop=True)
    mask_rows = mask_rows.assign(width=[sizes[i][0] for i in mask_rows["image_id"]],
                                 height=[sizes[i][1] for i in mask_rows["image_id"]])
    flavour, runs = decode_runs(mask_rows, rle, label_file)
    finding = [layout["finding"]] * len(mask_rows)
    masks = pd.DataFrame(zip(mask_rows["image_id"], finding, [" ".join(map(str, np.stack(r, 1).ravel())) for r in runs],
                             mask_rows["width"], mask_rows["height"]), columns=MASK_COLUMNS)
    boxes = pd.DataFrame([mask_box(*r, h) for r, h in zip(runs, mask_rows["height"])], columns=["x", "y", "w", "h"])
    boxes = pd.concat([masks[["image_id", "finding"]], boxes], axis=1)[list(BOX_COLUMNS)]

    n_masks = masks["image_id"].value_counts().to_dict()
    by_patient = patient == "dicom"
    frame = pd.DataFrame({
        "path": [paths[i].relative_to(data_dir).as_posix() if i in paths else layout["missing_path"].format(image_id=i)
                 for i in images],
        "image_id": images,
        "patient": [(h["patient_id"].strip() if by_patient else "") or i for i, h in zip(images, info)],
        "study": [h["study_uid"].strip() or i for i, h in zip(images, info)],
        "view": [h["view"].strip() for h in info],
        "age": [_age(h["age"]) for h in info],
        "sex": [h["sex"].strip() for h in info],
        vocab.findings[0]: np.array([i in n_masks for i in images], dtype=np.float32),
        "n_masks": [int(n_masks.get(i, 0)) for i in images],
    })
    if split == "official":
        frame = splits.random_split(frame, split_cfg["official_fractions"], seed=split_cfg["official_seed"])
    else:
        frame = random_split(frame, split, seed, fractions, c)

    listed = set(images)
    positive = int(frame[vocab.findings[0]].sum())
    counts = {"images": len(frame), "rows": len(rows), "positive_images": positive,
              "negative_images": len(frame) - positive, "masks": len(masks), "dicoms_found": len(on_disk),
              "unlisted_dicoms": sum(i not in listed for i in on_disk)}
    if counts["unlisted_dicoms"]:
        log.info("%s: %d DICOM(s) are not in %s (unlabelled; not read)", data_dir, counts["unlisted_dicoms"],
                 label_file.name)
    files = {"labels": str(label_file), "layout": f"{stage} ({label_file.name})", "rle": flavour,
             "patient": "DICOM PatientID (ImageId where the DICOM is absent)" if by_patient else "ImageId"}
    present = frame["image_id"].isin(paths.keys()).to_numpy()
    return finish(NAME, data_dir, frame, vocab.findings, label_file, present, boxes=boxes, masks=masks,
                  bbox_frame=None, files=files, release_counts=counts)
