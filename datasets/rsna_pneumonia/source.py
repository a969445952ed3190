"""RSNA Pneumonia Detection Challenge, stage 2 (see ``datasets/rsna_pneumonia/card.toml``) -> manifest,
boxes, missing files.

``stage_2_train_labels.csv`` (plain, gzipped, or inside Kaggle's one-file ``stage_2_train_labels.csv.zip``)
has one row per box, ``patientId,x,y,width,height,Target``: a negative image is one row with blank box
cells, a positive one a row per box (floats such as ``264.0``, pixels of the 1024x1024 DICOM). Each
patientId is one image, ``stage_2_train_images/<patientId>.dcm``, and stands for the patient (the release
has no other patient identifier): ``image_id``, ``patient`` and ``study`` are all the patientId.
``stage_2_detailed_class_info.csv`` (``patientId,class``, one row per label row), when present, gives the
three classes; it must cover the same patientIds and agree with Target (class "Lung Opacity" exactly
when Target is 1), or the files are of different stages and the load stops.

View, sex and age come from torchxrayvision's header table (``*_dicom_headers.csv.gz``, not a Kaggle
file) when it sits in ``data_dir``, else from the DICOM headers of the images on disk (pixels are not
read); an image with neither keeps them blank and is counted (``release_counts["images_without_header"]``).
There is no official split (the stage-2 test labels were never released): ``official`` is the card's
fixed-seed patient-level split, ``random`` a seeded one.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.core.progress import progress
from cxr_tf.sources import splits
from cxr_tf.sources.base import BOX_COLUMNS, SourceData, begin, finish, random_split
from cxr_tf.sources.base import card as _card

log = logging.getLogger(__name__)
NAME = "rsna_pneumonia"
OPTIONS = {
    "views": "all (default), PA or AP: keep one projection (images of unknown view are left out too)",
    "headers": "where view, sex and age come from: auto (default: the header table when present, else the "
               "DICOM headers), table, dicom, or none",
    "fractions": "random split: patient fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
}
VIEWS = ("all", "PA", "AP")
HEADERS = ("auto", "table", "dicom", "none")
TARGETS = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}
_AGE = re.compile(r"^(\d+(?:\.\d*)?)([YMWD]?)$", re.IGNORECASE)
_AGE_UNITS = {"": 1.0, "Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def card() -> dict:
    """The RSNA Pneumonia dataset card."""
    return _card(NAME)


def find_release_file(folder: Path, names) -> Path | None:
    """The first of ``names`` in ``folder``: plain, ``name.gz`` or ``name.zip`` (Kaggle's one-file download)."""
    for name in [names] if isinstance(names, str) else names:
        for candidate in (folder / name, folder / f"{name}.gz", folder / f"{name}.zip"):
            if candidate.is_file():
                return candidate
    return None


def read_rows(path: Path) -> list[list[str]]:
    """The CSV rows of a release file, plain, gzipped or the one CSV inside a zip (a BOM is dropped)."""
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                members = [n for n in zf.namelist() if n.lower().endswith(".csv") and not n.startswith("__MACOSX")]
                if len(members) != 1:
                    raise CxrDataError(path, f"expected one CSV inside the zip, found {members or 'none'}")
                data = zf.read(members[0])
        elif path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CxrDataError(path, f"cannot read: {exc}") from None
    return list(csv.reader(io.StringIO(text, newline="")))


def _header(path: Path, rows: list, wanted) -> dict[str, int]:
    """Column name -> index for ``wanted`` (found by name); a missing one is an error naming the file."""
    if not rows:
        raise CxrDataError(path, "empty file")
    header = [h.strip() for h in rows[0]]
    absent = [name for name in wanted if name not in header]
    if absent:
        raise CxrDataError(path, f"missing column(s) {absent}; header is {header}")
    return {name: header.index(name) for name in header}


def _body(path: Path, rows: list):
    """(line number, row) of every non-blank data row; a row of the wrong width is an error."""
    width = len(rows[0])
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            raise CxrDataError(path, f"line {lineno} has {len(row)} fields, the header {width}")
        yield lineno, [cell.strip() for cell in row]


def read_labels(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """``stage_2_train_labels.csv`` -> (one row per patientId in file order: image_id, target, n_boxes,
    line; the boxes in :data:`BOX_COLUMNS`; the number of label rows). Errors name the file and line."""
    c = card()
    cols, finding = c["layout"]["columns"], c["layout"]["box_finding"]
    rows = read_rows(path)
    at = _header(path, rows, [cols[k] for k in ("patient", "x", "y", "w", "h", "target")])
    pid_at, target_at = at[cols["patient"]], at[cols["target"]]
    box_at = [at[cols[k]] for k in ("x", "y", "w", "h")]
    images: dict[str, list] = {}       # patientId -> [target, n_boxes, first line]
    boxes, n_rows = [], 0
    for lineno, row in _body(path, rows):
        n_rows += 1
        pid, raw = row[pid_at], row[target_at]
        if not pid:
            raise CxrDataError(path, f"line {lineno}: empty {cols['patient']}")
        if raw not in TARGETS:
            raise CxrDataError(path, f"line {lineno}: {cols['target']} is {raw!r}; allowed: 0 or 1")
        target = TARGETS[raw]
        image = images.setdefault(pid, [target, 0, lineno])
        if image[0] != target:
            raise CxrDataError(path, f"line {lineno}: {pid} has {cols['target']} {target:g} here but "
                                     f"{image[0]:g} on line {image[2]}")
        cells = [row[i] for i in box_at]
        if target == 0:
            if any(cells):
                raise CxrDataError(path, f"line {lineno}: a box {cells} on a row with {cols['target']} 0")
            continue
        if not all(cells):
            raise CxrDataError(path, f"line {lineno}: {cols['target']} 1 needs a whole box (x, y, width, "
                                     f"height), got {cells}")
        try:
            x, y, w, h = (float(v) for v in cells)
        except ValueError:
            raise CxrDataError(path, f"line {lineno}: non-numeric box {cells}") from None
        if not all(map(math.isfinite, (x, y, w, h))) or w <= 0 or h <= 0:
            raise CxrDataError(path, f"line {lineno}: box {cells} has no positive, finite size")
        boxes.append((pid, finding, x, y, w, h))
        image[1] += 1
    if not images:
        raise CxrDataError(path, "no label rows")
    frame = pd.DataFrame([(pid, *v) for pid, v in images.items()], columns=["image_id", "target", "n_boxes", "line"])
    return frame, pd.DataFrame(boxes, columns=BOX_COLUMNS), n_rows


def read_classes(path: Path, labels: pd.DataFrame, label_path: Path) -> pd.Series:
    """``stage_2_detailed_class_info.csv`` -> the class of each image of ``labels`` (same order). The
    file must name every image once (repeats agreeing) and no other, and agree with Target."""
    c = card()
    cols, allowed = c["layout"]["columns"], c["layout"]["classes"]
    rows = read_rows(path)
    at = _header(path, rows, [cols["patient"], cols["class"]])
    found: dict[str, tuple[str, int]] = {}
    for lineno, row in _body(path, rows):
        pid, value = row[at[cols["patient"]]], row[at[cols["class"]]]
        if value not in allowed:
            raise CxrDataError(path, f"line {lineno}: {cols['class']} is {value!r}; allowed: {', '.join(allowed)}")
        first = found.setdefault(pid, (value, lineno))
        if first[0] != value:
            raise CxrDataError(path, f"line {lineno}: {pid} is {value!r} here but {first[0]!r} on line {first[1]}")
    ids = set(labels["image_id"])
    extra, absent = sorted(set(found) - ids), sorted(ids - set(found))
    for names, there, other in ((extra, path, label_path), (absent, label_path, path)):
        if names:
            raise CxrDataError(path, f"{len(names)} patientId(s) of {there.name} are not in {other.name}, e.g. "
                                     f"{names[:3]} (files of different stages?)")
    classes = labels["image_id"].map({pid: v for pid, (v, _) in found.items()})
    wrong = (classes == c["layout"]["positive_class"]) != (labels["target"] == 1)
    if wrong.any():
        i = int(np.flatnonzero(wrong.to_numpy())[0])
        pid = labels["image_id"].iloc[i]
        raise CxrDataError(path, f"line {found[pid][1]}: {pid} is {classes.iloc[i]!r} but has {cols['target']} "
                                 f"{labels['target'].iloc[i]:g} in {label_path.name} (line {labels['line'].iloc[i]}); "
                                 f"{c['layout']['positive_class']!r} is exactly Target 1")
    return classes


def parse_age(text) -> float:
    """A DICOM age string -> years: ``"51"``, ``"058"``, ``"058Y"``, ``"006M"``, ``"003W"``, ``"010D"``
    (also ``"43.0"``, as a table may write it); NaN when blank or unreadable."""
    m = _AGE.match(str(text).strip()) if text is not None else None
    return float(m.group(1)) * _AGE_UNITS[m.group(2).upper()] if m else float("nan")


def read_header_table(path: Path) -> pd.DataFrame:
    """torchxrayvision's DICOM header dump -> view, sex, age (raw text) indexed by patientId."""
    hc = card()["layout"]["header_columns"]
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CxrDataError(path, f"cannot read: {exc}") from None
    table.columns = [str(col).strip() for col in table.columns]
    key = next((col for col in hc["patient"] if col in table.columns), None)
    absent = [col for col in (hc["sex"], hc["age"], hc["view"]) if col not in table.columns]
    if key is None or absent:
        raise CxrDataError(path, f"missing column(s) {absent + ([] if key else [' or '.join(hc['patient'])])}; "
                                 f"header is {list(table.columns)}")
    ids = table[key].str.strip().str.replace(r"\.dcm$", "", regex=True)
    dup = ids.duplicated()
    if dup.any():
        line = int(np.flatnonzero(dup.to_numpy())[0]) + 2
        raise CxrDataError(path, f"line {line}: {ids[dup].iloc[0]} is listed twice")
    return pd.DataFrame({k: table[hc[k]].str.strip().to_numpy() for k in ("view", "sex", "age")}, index=ids.to_numpy())


def on_disk(data_dir: Path, paths: pd.Series) -> np.ndarray:
    """Which of ``paths`` (all in the one image folder of the layout) are files, from one listing."""
    folder = data_dir / Path(card()["layout"]["image_path"]).parent
    names = {e.name for e in os.scandir(folder) if e.is_file()} if folder.is_dir() else set()
    return np.array([p.rsplit("/", 1)[-1] in names for p in paths], dtype=bool) if names else \
        np.zeros(len(paths), dtype=bool)


def dicom_headers(data_dir: Path, paths: pd.Series) -> pd.DataFrame:
    """View, sex and age (raw text) from the header of each DICOM of ``paths`` (all on disk; pixels
    not read), indexed like ``paths``; a file that is not DICOM or is damaged is logged and left out."""
    import pydicom

    hc = card()["layout"]["header_columns"]
    tags = [hc["view"], hc["sex"], hc["age"]]
    out = {}
    for key, rel in progress(list(paths.items()), desc="rsna_pneumonia: DICOM headers", unit="file"):
        full = data_dir / rel
        try:
            ds = pydicom.dcmread(full, stop_before_pixels=True, force=True, specific_tags=tags)
        except Exception as exc:      # pydicom raises many kinds on a damaged file
            log.warning("%s: unreadable DICOM header (%s: %s); view, sex and age left blank", full,
                        type(exc).__name__, exc)
            continue
        values = [str(ds.get(tag, "") or "").strip() for tag in tags]
        if not any(values):
            log.warning("%s: no %s in the header (not DICOM?); left blank", full, ", ".join(tags))
            continue
        out[key] = values
    return pd.DataFrame.from_dict(out, orient="index", columns=["view", "sex", "age"])


def _demographics(data_dir: Path, frame: pd.DataFrame, present: np.ndarray, headers: str, files: dict
                  ) -> pd.DataFrame:
    """view, sex, age of every image (table first, then DICOM headers, as ``headers`` says); blank where neither."""
    layout = card()["layout"]
    known = pd.DataFrame(columns=["view", "sex", "age"])
    table = find_release_file(data_dir, layout["header_tables"]) if headers in ("auto", "table") else None
    if headers == "table" and table is None:
        raise CxrDataError(data_dir, f"headers=table but no {' or '.join(layout['header_tables'])}(.gz) here")
    if table is not None:
        known = read_header_table(table)
        files["headers"] = str(table)
    if headers in ("auto", "dicom"):
        todo = frame.set_index("image_id")["path"][present]
        todo = todo[~todo.index.isin(known.index)]
        found = dicom_headers(data_dir, todo)
        if len(found):
            files["dicom_headers"] = f"{len(found)} file(s) under {Path(layout['image_path']).parent}/"
            known = pd.concat([known, found]) if len(known) else found
    out = known.reindex(frame["image_id"]).fillna("")
    return out.reset_index(drop=True)


def _official(frame: pd.DataFrame, c: dict) -> pd.DataFrame:
    """The card's fixed split (no split was released)."""
    s = c["splits"]
    return splits.random_split(frame, s["official_fractions"], seed=s["official_seed"])


def _counts(frame: pd.DataFrame, boxes: pd.DataFrame, n_rows: int, classes: pd.Series | None) -> dict:
    """What the card's ``[expected]`` table is checked against."""
    counts = {"images": len(frame), "patients": int(frame["patient"].nunique()), "label_rows": n_rows,
              "positive_images": int((frame["target"] == 1).sum()), "boxes": len(boxes)}
    for col in ("sex", "view"):
        for value, n in frame.loc[frame[col] != "", col].value_counts().sort_index().items():
            counts[f"{col}_{value}"] = int(n)
    counts["images_without_header"] = int(((frame["view"] == "") & (frame["sex"] == "")).sum())
    if classes is not None:
        for value, n in classes.value_counts().sort_index().items():
            counts[re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_") + "_images"] = int(n)
    return counts


def load(data_dir, split: str = "official", seed: int | None = None, views: str = "all", headers: str = "auto",
         fractions=None) -> SourceData:
    """Read an RSNA Pneumonia (stage 2) folder into a split manifest, boxes and the missing images."""
    data_dir, c, vocab, seed = begin(NAME, data_dir, seed)
    layout = c["layout"]
    for key, value, allowed in (("views", views, VIEWS), ("headers", headers, HEADERS)):
        if value not in allowed:
            raise CxrConfigError(f"unknown {key} {value!r}", key=key, choices=allowed)
    if split == "official" and fractions is not None:
        raise CxrConfigError("fractions apply to --split random; the official split is the card's", key="fractions")
    label_file = find_release_file(data_dir, layout["label_files"])
    if label_file is None:
        raise CxrDataError(data_dir, f"no label file; expected {layout['label_files'][0]} (plain, .gz or .zip)")
    files = {"labels": str(label_file)}
    frame, boxes, n_rows = read_labels(label_file)
    class_file = find_release_file(data_dir, layout["class_files"])
    classes = read_classes(class_file, frame, label_file) if class_file else None
    if class_file:
        files["classes"] = str(class_file)
    frame.insert(0, "path", [layout["image_path"].format(patientId=pid) for pid in frame["image_id"]])
    frame = frame.assign(patient=frame["image_id"], study=frame["image_id"])
    present = on_disk(data_dir, frame["path"])
    demo = _demographics(data_dir, frame, present, headers, files)
    frame = frame.assign(view=demo["view"].to_numpy(), sex=demo["sex"].to_numpy(),
                         age=demo["age"].map(parse_age).to_numpy())
    counts = _counts(frame, boxes, n_rows, classes)
    if counts["images_without_header"]:
        log.info("%s: %d of %d images have no view, sex or age (no readable DICOM, no header table row)", data_dir,
                 counts["images_without_header"], len(frame))
    frame[layout["target_finding"]] = frame["target"].astype(np.float32)
    for value in layout["classes"]:
        frame[value] = np.nan if classes is None else (classes == value).astype(np.float32).to_numpy()
    frame = frame.assign(detailed_class="" if classes is None else classes.to_numpy())
    frame = frame.drop(columns=["target", "line"])

    excluded = {}
    if views != "all":
        if not (frame["view"] != "").any():
            raise CxrDataError(data_dir, f"views={views} needs each image's ViewPosition: no DICOM is on disk and "
                                         f"no {layout['header_tables'][0]}(.gz) is here")
        keep = (frame["view"] == views).to_numpy()
        excluded[f"views={views}"] = int((~keep).sum())
        frame, present = frame[keep].reset_index(drop=True), present[keep]
        boxes = boxes[boxes["image_id"].isin(set(frame["image_id"]))].reset_index(drop=True)
    frame = _official(frame, c) if split == "official" else random_split(frame, split, seed, fractions, c)
    return finish(NAME, data_dir, frame, vocab.findings, label_file, present, boxes=boxes, bbox_frame=None, files=files,
                  release_counts=counts, excluded=excluded)
