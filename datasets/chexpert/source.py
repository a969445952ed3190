"""CheXpert on disk (see ``datasets/chexpert/card.toml``) -> manifest with all four label states.

``data_dir`` is the folder holding ``train.csv`` and ``valid.csv`` (``CheXpert-v1.0-small`` or
``CheXpert-v1.0``). Every CSV path begins with the release's folder name
(``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``); that first component is
stripped and the rest read relative to ``data_dir``, whatever the folder is called now (a renamed
folder, or a CSV of the other variant, is reported, not refused). ``test_labels.csv`` and
``test/`` (the labelled test set of 2022) are read when present. Columns are found by name.

Patient, study and view come from the path; Sex, Age, Frontal/Lateral and AP/PA are kept. Labels
keep their four states: 1, 0, -1 (uncertain) and blank (NaN, not mentioned).
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.sources import manifest, splits
from cxr_tf.sources.base import SourceData, begin, finish, random_split, state
from cxr_tf.sources.base import card as _card

log = logging.getLogger(__name__)
NAME = "chexpert"
OPTIONS = {
    "views": "frontal (default, as most reproductions train), lateral, or all",
    "projection": "all (default), AP or PA: keep frontal views of one projection (laterals unaffected)",
    "val_fraction": "official split without the test set: a patient carve-out of train.csv as val, "
                    "valid.csv then the reported test split [default 0: valid.csv is val]",
    "fractions": "random split: patient fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
}
VIEWS = ("frontal", "lateral", "all")
PROJECTIONS = ("all", "AP", "PA")


def card() -> dict:
    """The CheXpert dataset card."""
    return _card(NAME)


def read_csv(path: Path, findings, part: str) -> tuple[pd.DataFrame, set]:
    """One label CSV -> manifest columns (``path`` relative to the data dir); returns the frame
    and the path prefixes seen. Errors name the file, the line and the column."""
    c = card()
    cols, pattern = c["layout"]["columns"], re.compile(c["layout"]["path_pattern"])
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise CxrDataError(path, "empty label file")
    header = [h.strip() for h in rows[0]]
    absent = [name for name in (cols["path"], *findings) if name not in header]
    if absent:
        raise CxrDataError(path, f"missing column(s) {absent}; header is {header}")
    at = {name: header.index(name) for name in header}
    out, prefixes = [], set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CxrDataError(path, f"line {lineno} has {len(row)} fields, the header {len(header)}")
        raw = row[at[cols["path"]]].strip()
        parts = raw.split("/")
        if parts and parts[0] not in ("train", "valid", "test"):
            prefixes.add(parts[0])
            parts = parts[1:]
        rel = "/".join(parts)
        m = pattern.match(rel)
        if not m or m["part"] != part:
            raise CxrDataError(path, f"line {lineno}: path {raw!r} is not <prefix>/{part}/patientN/studyN/viewN_"
                                     "frontal|lateral.jpg")
        labels = [state(row[at[name]], path, name, lineno) for name in findings]
        orientation = m["orientation"].capitalize()
        ap_pa = row[at[cols["ap_pa"]]].strip() if cols["ap_pa"] in at else ""
        sex = row[at[cols["sex"]]].strip() if cols["sex"] in at else ""
        age = row[at[cols["age"]]].strip() if cols["age"] in at else ""
        out.append({"path": rel, "image_id": rel, "patient": f"patient{m['patient']}",
                    "study": f"patient{m['patient']}/study{m['study']}",
                    "view": ap_pa if orientation == "Frontal" else (ap_pa or "LATERAL"),
                    "age": age, "sex": sex,
                    **dict(zip(findings, labels)),
                    "frontal_lateral": (row[at[cols["frontal_lateral"]]].strip()
                                        if cols["frontal_lateral"] in at else orientation),
                    "ap_pa": ap_pa, "source_csv": part})
    frame = pd.DataFrame(out, columns=["path", "image_id", "patient", "study", "view", "age", "sex", *findings,
                                       "frontal_lateral", "ap_pa", "source_csv"])
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    frame[list(findings)] = frame[list(findings)].astype(np.float32)
    return frame, prefixes


def _filter(frame: pd.DataFrame, views: str, projection: str) -> tuple[pd.DataFrame, dict]:
    """Keep the requested views; returns the kept rows and counts of what each filter excluded."""
    if views not in VIEWS:
        raise CxrConfigError(f"unknown views {views!r}", key="views", choices=VIEWS)
    if projection not in PROJECTIONS:
        raise CxrConfigError(f"unknown projection {projection!r}", key="projection", choices=PROJECTIONS)
    frontal = frame["frontal_lateral"].str.lower() == "frontal"
    keep = {"frontal": frontal, "lateral": ~frontal, "all": frontal | ~frontal}[views]
    excluded = {}
    if views != "all":
        excluded[f"views={views}"] = int((~keep).sum())
    if projection != "all":
        wrong = frontal & (frame["ap_pa"] != projection)
        excluded[f"projection={projection}"] = int((keep & wrong).sum())
        keep &= ~wrong
    return frame[keep].reset_index(drop=True), excluded


def _official(frame: pd.DataFrame, val_fraction: float, seed: int, where: str) -> pd.DataFrame:
    """train.csv -> train, valid.csv -> val, test_labels.csv -> test; or, with ``val_fraction``
    and no test set, a patient carve-out of train.csv as val and valid.csv as test."""
    part = frame["source_csv"]
    split = part.map({"train": "train", "valid": "val", "test": "test"})
    if val_fraction:
        if (part == "test").any():
            raise CxrConfigError("with the labelled test set present, valid.csv is the validation split; "
                                 "leave val_fraction at 0", key="val_fraction")
        carved = splits.random_split(frame[part == "train"], (1.0 - val_fraction, val_fraction, 0.0), seed=seed)
        split[part == "train"] = carved["split"].to_numpy()
        split[part == "valid"] = "test"
    out = frame.assign(split=split)
    manifest.assert_patient_disjoint(out, where=where)
    return out


def load(data_dir, split: str = "official", seed: int | None = None, views: str = "frontal",
         projection: str = "all", val_fraction: float | None = None, fractions=None) -> SourceData:
    """Read a CheXpert folder into a split manifest (see the module doc)."""
    data_dir, c, vocab, seed = begin(NAME, data_dir, seed)
    layout, split_cfg = c["layout"], c["splits"]
    files, parts, prefixes = {}, [], set()
    for key, part, required in (("train_csv", "train", True), ("valid_csv", "valid", True),
                                ("test_csv", "test", False)):
        path = data_dir / layout[key]
        if not path.is_file():
            if required:
                raise CxrDataError(data_dir, f"no {layout[key]}; --data-dir must be the folder holding "
                                             f"{layout['train_csv']} and {layout['valid_csv']} "
                                             f"(e.g. {layout['folders'][0]}/)")
            continue
        frame, seen = read_csv(path, vocab.findings, part)
        files[part] = str(path)
        parts.append(frame)
        prefixes |= seen
    listed = pd.concat(parts, ignore_index=True)
    counts = {f"{p}_images": int((listed["source_csv"] == p).sum()) for p in ("train", "valid", "test")}
    counts.update({f"{p}_patients": int(listed.loc[listed["source_csv"] == p, "patient"].nunique())
                   for p in ("valid", "test")})
    if prefixes:
        files["path_prefix"] = ", ".join(sorted(prefixes))
        if prefixes != {data_dir.name}:
            log.warning("%s: CSV paths begin with %s, the folder is called %r; reading them relative to %s",
                        data_dir, " / ".join(sorted(prefixes)), data_dir.name, data_dir)
    frame, excluded = _filter(listed, views, projection)
    if split == "official":
        frame = _official(frame, split_cfg["official_val_fraction"] if val_fraction is None else val_fraction,
                          seed, str(data_dir))
    else:
        frame = random_split(frame, split, seed, fractions, c)
    return finish(NAME, data_dir, frame, vocab.findings, data_dir, files=files, release_counts=counts,
                  excluded=excluded)
