"""PadChest on disk (see ``datasets/padchest/card.toml``) -> manifest and missing files.

``data_dir`` holds ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` (plain or ``.gz``) and
the 16-bit PNGs as ``<ImageDir>/<ImageID>`` (ImageDir: the number of the zip archive); a flat copy
(every PNG in ``data_dir`` or ``images/``) is read too. Columns are found by name; the first column
is an unnamed row index, and some cells hold newlines, so errors give the line a row starts on.

``Labels`` is Python-list text of PadChest's English terms (``['pleural effusion', ' cardiomegaly']``),
parsed without eval; terms are stripped (many begin with a space) and checked against the card's
list. A finding is 1 when its term, or one the card lists as narrower, is in the row, else 0 (the
labels are exhaustive per report). Rows without a usable term (``nan``: no report; ``['']``;
``['exclude']``) are unlabelled: dropped and counted, or kept with every finding blank.

Patient = PatientID, study = StudyID, view = Projection (EXCLUDE and UNK are left out, counted);
age = year of StudyDate_DICOM - PatientBirth; extra columns ``label_method`` (radiologist for
MethodLabel Physician, else nlp), ``pediatric`` (age < 18), ``terms`` (the row's terms, ``|``-joined)
and ``study_date``. There is no official split: ``official`` is the card's fixed-seed patient-level
split of the whole label file, drawn before any filter.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.sources import splits
from cxr_tf.sources.base import SourceData, begin, find_file, finish, open_text, random_split
from cxr_tf.sources.base import card as _card

log = logging.getLogger(__name__)
NAME = "padchest"
OPTIONS = {
    "views": "frontal (PA, AP, AP_horizontal; default), lateral (L), costal (COSTAL), all, or Projection "
             "values joined by commas (PA,L); EXCLUDE and UNK are always left out",
    "label_method": "all (default), radiologist (MethodLabel Physician only) or nlp (RNN_model only)",
    "unlabelled": "drop (default) or blank: rows without a usable term (Labels nan, [''] or ['exclude']) "
                  "are left out, or kept with every finding blank",
    "narrower": "true (default): a finding is also positive for the narrower terms of the card's [narrower] "
                "table (laminar atelectasis -> atelectasis); false: its own term only",
    "fractions": "random split: patient fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
}
LABEL_METHODS = ("all", "radiologist", "nlp")
UNLABELLED = ("drop", "blank")
_QUOTED = r"'[^'\\]*'|\"[^\"\\]*\""
_LIST = re.compile(rf"\[\s*(?:(?:{_QUOTED})\s*(?:,\s*(?:{_QUOTED})\s*)*,?)?\s*\]")
_ITEM = re.compile(_QUOTED)
_NO_LABELS = ("", "nan")


def card() -> dict:
    """The PadChest dataset card."""
    return _card(NAME)


def parse_terms(text: str) -> tuple[str, ...] | None:
    """A ``Labels`` cell -> its terms, stripped, in order, duplicates dropped; None for a row
    without labels (blank or ``nan``). Raises ValueError for text that is not a list of quoted terms."""
    text = text.strip()
    if text in _NO_LABELS:
        return None
    if not _LIST.fullmatch(text):
        raise ValueError(f"Labels {text[:80]!r} is not a list of quoted terms")
    return tuple(dict.fromkeys(m[1:-1].strip() for m in _ITEM.findall(text)))


def read_labels(path: Path) -> pd.DataFrame:
    """The label file -> one row per image with the columns of the card's ``[layout.columns]``,
    named by their role (stripped strings, blanks kept as ""); errors name the file."""
    cols = card()["layout"]["columns"]
    try:
        with open_text(path) as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
        absent = [c for c in cols.values() if c not in header]
        if absent:
            raise CxrDataError(path, f"missing column(s) {absent}; header is {header}")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",   # every column: a row
                            compression="gzip" if path.suffix == ".gz" else None)            # with extra cells fails
    except (OSError, EOFError, ValueError, csv.Error, pd.errors.ParserError) as exc:
        if isinstance(exc, CxrDataError):
            raise
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if fields:                     # pandas counts records, not lines (a cell may hold newlines)
            want, record, saw = map(int, fields.groups())
            raise CxrDataError(path, f"line {_start_line(path, record - 1)} has {saw} fields, the header {want}") \
                from None
        raise CxrDataError(path, f"cannot read: {exc}") from None
    if frame.empty:
        raise CxrDataError(path, "no image rows")
    frame.columns = [c.strip() for c in frame.columns]
    roles = {name: role for role, name in cols.items()}
    return frame.rename(columns=roles)[list(cols)].apply(lambda col: col.str.strip()).reset_index(drop=True)


def _start_line(path: Path, record: int) -> int:
    """The line the ``record``-th record of a CSV starts on (0: the header). Cells may hold
    newlines, so the file is read again up to it (only on an error)."""
    end = 0
    with open_text(path) as fh:
        reader = csv.reader(fh)
        for k, _ in enumerate(reader):
            if k == record:
                break
            end = reader.line_num
    return end + 1


def where(path: Path, table: pd.DataFrame, row: int) -> str:
    """``line N (ImageID)`` of the ``row``-th image row of the label file."""
    return f"line {_start_line(path, row + 1)} ({table['image'].iat[row]})"


def _check_values(table: pd.DataFrame, path: Path, column: str, allowed) -> None:
    """Refuse a value of ``column`` outside ``allowed``, naming the file and the first bad line."""
    bad = np.flatnonzero(~table[column].isin(list(allowed)).to_numpy())
    if len(bad):
        name = card()["layout"]["columns"][column]
        raise CxrDataError(path, f"{where(path, table, bad[0])}: {name} is {table[column].iat[bad[0]]!r}; "
                                 f"allowed: {', '.join(allowed)}")


def _term_index(c: dict, narrower: bool) -> dict[str, list[int]]:
    """Term -> the findings it makes positive (the finding's own term, and its narrower ones)."""
    known = set(c["layout"]["terms"])
    out: dict[str, list[int]] = {}
    for i, finding in enumerate(c["findings"]):
        for term in [finding, *(c.get("narrower", {}).get(finding, []) if narrower else [])]:
            if term not in known:
                raise CxrDataError(cards.card_path("datasets", NAME),
                                   f"{term!r} (a finding or a [narrower] term) is not in [layout] terms")
            out.setdefault(term, []).append(i)
    return out


def label_matrix(table: pd.DataFrame, path: Path, narrower: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The findings (rows x findings: 1 or 0; NaN for an unlabelled row), whether each row is
    unlabelled, and each row's terms ``|``-joined. An unknown or malformed term names the line."""
    c = card()
    known, useless = set(c["layout"]["terms"]), set(c["uninformative"])
    index = _term_index(c, narrower)
    width = len(c["findings"])
    codes, texts = pd.factorize(table["labels"])
    first = np.unique(codes, return_index=True)[1]
    matrix = np.zeros((len(texts), width), dtype=np.float32)
    empty, joined = np.zeros(len(texts), dtype=bool), []
    for k, text in enumerate(texts.tolist()):
        try:
            terms = parse_terms(text)
        except ValueError as exc:
            raise CxrDataError(path, f"{where(path, table, first[k])}: {exc}") from None
        unknown = [t for t in terms or () if t not in known and t != ""]
        if unknown:
            raise CxrDataError(path, f"{where(path, table, first[k])}: unknown PadChest term {unknown[0]!r} in Labels")
        empty[k] = terms is None or not set(terms) - useless
        if empty[k]:
            matrix[k] = np.nan
        else:
            matrix[k, [i for t in terms for i in index.get(t, [])]] = 1.0
        joined.append("|".join(t for t in terms or () if t))
    return matrix[codes], empty[codes], np.asarray(joined, dtype=object)[codes].tolist()


def locate(data_dir: Path, table: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Each image's path relative to ``data_dir`` (``<ImageDir>/<ImageID>``, or a flat copy's when
    only that is on disk) and whether it is on disk; each folder is listed once."""
    layout = card()["layout"]
    images = table["image"].tolist()
    paths = [layout["image_path"].format(ImageDir=d, ImageID=i) for d, i in zip(table["image_dir"].tolist(), images)]
    present = np.zeros(len(table), dtype=bool)
    listed: dict[str, set | None] = {}
    for k, path in enumerate(paths):
        folder, _, name = path.rpartition("/")
        if folder not in listed:
            listed[folder] = set(os.listdir(data_dir / folder)) if (data_dir / folder).is_dir() else None
        present[k] = listed[folder] is not None and name in listed[folder]
    for flat in layout["flat_folders"]:
        folder = data_dir / flat
        if present.all() or not folder.is_dir():
            continue
        names, prefix = set(os.listdir(folder)), "" if flat in (".", "") else f"{flat}/"
        hits = [k for k in np.flatnonzero(~present) if images[k] in names]
        for k in hits:
            paths[k], present[k] = prefix + images[k], True
        if hits:
            log.info("%s: %d image(s) found in the flat folder %s", data_dir, len(hits), folder)
    return paths, present


def _views(views) -> set[str]:
    """The Projection values the ``views`` option keeps."""
    layout = card()["layout"]
    usable = [p for p in layout["projections"] if p not in layout["dropped_projections"]]
    if isinstance(views, str) and views in (*layout["views"], "all"):
        return set(usable) if views == "all" else set(layout["views"][views])
    wanted = [v.strip() for v in (views.split(",") if isinstance(views, str) else views)]
    if not wanted or not set(wanted) <= set(usable):
        raise CxrConfigError(f"unknown views {views!r}", key="views",
                             choices=(*layout["views"], "all", ",".join(usable)))
    return set(wanted)


def _flag(value, key: str) -> bool:
    """A boolean option given as a bool or as text (true/false)."""
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("true", "false"):
        return str(value).strip().lower() == "true"
    raise CxrConfigError(f"expected true or false, got {value!r}", key=key, choices=("true", "false"))


def release_counts(table: pd.DataFrame, unlabelled: np.ndarray) -> dict[str, int]:
    """Counts of the whole label file, the keys of the card's ``[expected]`` table and more."""
    counts = {"images": len(table), "patients": int(table["patient"].nunique()),
              "studies": int(table["study"].nunique())}
    counts.update({f"{k.lower()}_images": int(v) for k, v in table["projection"].value_counts().items()})
    counts.update({f"{k.lower()}_images": int(v) for k, v in table["method"].value_counts().items()})
    counts["unlabelled_images"] = int(unlabelled.sum())
    counts["no_labels_images"] = int(table["labels"].isin(_NO_LABELS).sum())
    counts["studies_with_several_patients"] = int((table.groupby("study")["patient"].nunique() > 1).sum())
    return counts


def manifest_frame(table: pd.DataFrame, labels: np.ndarray, terms: list[str], paths: list[str]) -> pd.DataFrame:
    """The manifest columns (without ``split``) of every row of the label file."""
    c = card()
    birth = pd.to_numeric(table["birth"], errors="coerce")
    year = pd.to_numeric(table["study_date"].str[:4], errors="coerce")
    age = (year - birth).astype(np.float64)
    frame = pd.DataFrame({
        "path": paths, "image_id": table["image"], "patient": table["patient"], "study": table["study"],
        "view": table["projection"], "age": age,
        "sex": table["sex"].where(~table["sex"].isin(["nan", "None"]), ""),
    })
    frame = pd.concat([frame, pd.DataFrame(labels, columns=c["findings"], index=table.index)], axis=1)
    return frame.assign(label_method=table["method"].map(c["layout"]["label_methods"]),
                        pediatric=(age < 18).astype("boolean").mask(age.isna()), terms=terms,
                        study_date=table["study_date"])


def _official(frame: pd.DataFrame, c: dict) -> pd.Series:
    """The card's fixed-seed patient-level split of every listed patient."""
    s = c["splits"]
    patients = pd.DataFrame({"patient": pd.unique(frame["patient"])})
    assigned = splits.random_split(patients, s["official_fractions"], seed=s["official_seed"])
    return frame["patient"].map(assigned.set_index("patient")["split"])


def assemble(data_dir: Path, label_file: Path, table: pd.DataFrame, split: str = "official", seed: int | None = None,
             views="frontal", label_method: str = "all", unlabelled: str = "drop", narrower=True,
             fractions=None) -> SourceData:
    """A read label file (:func:`read_labels`) -> the split, validated manifest (see the module doc).
    Filters apply in this order, each counted in ``excluded``: EXCLUDE/UNK projections,
    ``unlabelled``, ``label_method``, ``views``."""
    c = card()
    seed = c["splits"]["seed"] if seed is None else seed
    layout = c["layout"]
    if split not in splits.METHODS:
        raise CxrConfigError(f"unknown split {split!r}", key="split", choices=splits.METHODS)
    for key, value, allowed in (("label_method", label_method, LABEL_METHODS), ("unlabelled", unlabelled, UNLABELLED)):
        if value not in allowed:
            raise CxrConfigError(f"unknown {key} {value!r}", key=key, choices=allowed)
    keep_views, narrower = _views(views), _flag(narrower, "narrower")
    _check_values(table, label_file, "projection", layout["projections"])
    _check_values(table, label_file, "method", layout["label_methods"])
    bad = np.flatnonzero(~table["image_dir"].str.fullmatch(r"\d+").to_numpy())
    if len(bad):
        raise CxrDataError(label_file, f"{where(label_file, table, bad[0])}: ImageDir is "
                                       f"{table['image_dir'].iat[bad[0]]!r}, not a folder number")
    labels, empty, terms = label_matrix(table, label_file, narrower)
    counts = release_counts(table, empty)
    paths, present = locate(data_dir, table)
    frame = manifest_frame(table, labels, terms, paths)
    if split == "official":
        frame["split"] = _official(frame, c)
    excluded, keep = {}, np.ones(len(frame), dtype=bool)
    steps = [(f"Projection {p}", frame["view"].to_numpy() == p) for p in layout["dropped_projections"]]
    steps.append(("unlabelled=drop", empty if unlabelled == "drop" else np.zeros(len(frame), bool)))
    if label_method != "all":
        steps.append((f"label_method={label_method}", (frame["label_method"] != label_method).to_numpy()))
    steps.append((f"views={views if isinstance(views, str) else ','.join(views)}",
                  ~frame["view"].isin(keep_views).to_numpy()))
    for name, drop in steps:
        if (keep & drop).any():
            excluded[name] = int((keep & drop).sum())
        keep &= ~drop
    frame, present = frame[keep].reset_index(drop=True), present[keep]
    if split != "official":
        frame = random_split(frame, split, seed, fractions, c)
    files = {"labels": str(label_file), "label_terms": "own and narrower terms" if narrower else "own term"}
    return finish(NAME, data_dir, frame, c["findings"], label_file, present, files=files, release_counts=counts,
                  excluded=excluded)


def load(data_dir, split: str = "official", seed: int | None = None, views="frontal", label_method: str = "all",
         unlabelled: str = "drop", narrower=True, fractions=None) -> SourceData:
    """Read a PadChest folder into a split manifest and the list of missing images (see the module doc)."""
    data_dir, c, _, seed = begin(NAME, data_dir, seed)
    names = c["layout"]["label_files"]
    label_file = find_file(data_dir, names)
    if label_file is None:
        raise CxrDataError(data_dir, f"no label file; expected {names[0]}(.gz) (or {', '.join(names[1:])}); "
                                     "--data-dir is the folder holding it and the image folders 0/ ... 54/")
    return assemble(data_dir, label_file, read_labels(label_file), split, seed, views=views,
                    label_method=label_method, unlabelled=unlabelled, narrower=narrower, fractions=fractions)
