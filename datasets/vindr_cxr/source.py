"""VinDr-CXR on disk (see ``datasets/vindr_cxr/card.toml``) -> manifest, per-reader boxes, reader labels.

Two layouts, detected (``layout=auto``): the PhysioNet release (``annotations/image_labels_train.csv``:
one row per reader and image with the 28 labels; ``image_labels_test.csv``: the consensus of five
radiologists, one row per image, "Other disease" spelled without the s; ``annotations_{train,test}.csv``:
one row per reader's box, "No finding" rows without one; ``train/`` and ``test/<image_id>.dicom``)
and the Kaggle VinBigData training set (``train.csv``: ``image_id, class_name, class_id, rad_id,
x_min, y_min, x_max, y_max``, one row per reader's box or "No finding", 15 classes, and
``train/<image_id>.dicom``). Every training image was read by 3 of 17 radiologists; the image label
follows ``readers`` (majority, any, uncertain); the test images keep their published consensus.
The Kaggle layout labels 14 of the 27 findings and "No finding": the other columns stay blank.

There is no patient identifier: ``patient`` (and ``study``) is the image_id. Boxes stay in each
DICOM's own pixels (``bbox_frame`` None), one row per reader's box with its ``rad_id``; every
reader's own labels are kept in the side table ``reader_labels``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.sources import splits
from cxr_tf.sources.base import BOX_COLUMNS, SourceData, begin, find_file, finish, random_split
from cxr_tf.sources.base import card as _card

log = logging.getLogger(__name__)
NAME = "vindr_cxr"
OPTIONS = {
    "layout": "auto (default), physionet (vindr-cxr 1.0.0) or kaggle (VinBigData train.csv): which layout "
              "--data-dir holds",
    "readers": "training labels from the 3 readers: majority (default: at least 2 of 3), any (at least one; "
               "'No finding' only when all three found nothing) or uncertain (2-3 of 3 -> 1, 1 of 3 -> -1); "
               "test images keep the published consensus",
    "val_fraction": "official split: fraction of training images carved out for validation [default: the card's 0.1]",
    "fractions": "random split: image fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
}
LAYOUTS = ("auto", "physionet", "kaggle")
CELLS = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "": np.nan}
COORDS = ["x_min", "y_min", "x_max", "y_max"]
BOX_EXTRA = ("rad_id",)
RULE_NAMES = {"majority": "majority of {n} readers", "any": "any of {n} readers",
              "uncertain": "majority of {n} readers, one of {n} uncertain"}


def card() -> dict:
    """The VinDr-CXR dataset card."""
    return _card(NAME)


def image_path(part: str, image_id: str) -> str:
    """``train/<image_id>.dicom`` (or ``test/``), relative to the data directory."""
    return card()["layout"]["image_path"].format(part=part, image_id=image_id)


def read_table(path: Path, required, optional=()) -> pd.DataFrame:
    """A release CSV (plain or gzipped) as stripped strings, blanks kept as ""; the reader column
    is read case-insensitively as ``rad_id``; a missing ``required`` column is an error naming the file."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except (OSError, EOFError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CxrDataError(path, f"cannot read: {exc}") from None
    reader = card()["layout"]["reader_column"]
    frame.columns = [reader if c.strip().lower() == reader else c.strip() for c in frame.columns]
    absent = [c for c in required if c not in frame.columns]
    if absent:
        raise CxrDataError(path, f"missing column(s) {absent}; header is {list(frame.columns)}")
    for col in [*required, *(c for c in optional if c in frame.columns)]:
        frame[col] = frame[col].str.strip()
    return frame


def cells(column: pd.Series, path: Path, finding: str) -> np.ndarray:
    """A column of 0/1 label cells (blank: not labelled) -> float32; anything else is an error
    naming the file and line."""
    bad = ~column.isin(CELLS.keys())
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise CxrDataError(path, f"line {line}: {finding} is {column[bad].iloc[0]!r}; allowed: 1, 0 or blank")
    return column.map(CELLS).to_numpy(np.float32)


def _check_ids(frame: pd.DataFrame, path: Path, reader: bool = True) -> None:
    """Refuse malformed image ids and reader ids, naming the line."""
    layout = card()["layout"]
    checks = [("image_id", layout["image_id_pattern"])] + ([("rad_id", layout["reader_pattern"])] if reader else [])
    for col, pattern in checks:
        bad = ~frame[col].str.fullmatch(pattern[1:-1])
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise CxrDataError(path, f"line {line}: {col} {frame[col][bad].iloc[0]!r} does not match {pattern}")


def _canonical(names: pd.Series, allowed, path: Path, what: str) -> pd.Series:
    """Class names in the card's spelling (aliases accepted); an unknown one names its line."""
    aliases = card().get("aliases", {})
    out = names.map(lambda n: aliases.get(n, n))
    bad = ~out.isin(list(allowed))
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise CxrDataError(path, f"line {line}: unknown {what} {names[bad].iloc[0]!r}; known: {', '.join(allowed)}")
    return out


def read_boxes(table: pd.DataFrame, path: Path, counts: dict) -> pd.DataFrame:
    """Rows of an annotation table (``class_name`` already canonical) -> :data:`BOX_COLUMNS` plus
    ``rad_id``, x/y/w/h in the DICOM's own pixels. "No finding" rows must have no box; a finding
    row without a box keeps its label only; a box of zero or negative size is left out and counted."""
    no_finding = card()["no_finding"]
    raw = table[COORDS]
    empty = (raw == "").to_numpy()
    nf = (table["class_name"] == no_finding).to_numpy()
    partial = empty.any(axis=1) & ~empty.all(axis=1)
    if partial.any() or (nf & ~empty.all(axis=1)).any():
        line = int(np.flatnonzero(partial | (nf & ~empty.all(axis=1)))[0]) + 2
        raise CxrDataError(path, f"line {line}: box {raw.iloc[line - 2].tolist()} is incomplete or on a "
                                 f"{no_finding!r} row")
    boxed = ~empty.any(axis=1)
    try:
        xyxy = raw[boxed].astype(np.float64).to_numpy().reshape(-1, 4)
    except ValueError:
        values = pd.to_numeric(raw[boxed].stack(), errors="coerce")
        line = int(values.index[values.isna()][0][0]) + 2
        raise CxrDataError(path, f"line {line}: non-numeric box {raw.loc[line - 2].tolist()}") from None
    rows = table[boxed]
    ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1]) & np.isfinite(xyxy).all(axis=1)
    counts["degenerate_boxes"] = counts.get("degenerate_boxes", 0) + int((~ok).sum())
    counts["finding_rows_without_box"] = counts.get("finding_rows_without_box", 0) + int((~boxed & ~nf).sum())
    if not ok.all():
        log.warning("%s: %d box(es) of zero or negative size left out, e.g. line %d", path, int((~ok).sum()),
                    int(rows.index[~ok][0]) + 2)
    rows, xyxy = rows[ok], xyxy[ok]
    return pd.DataFrame({"image_id": rows["image_id"].to_numpy(), "finding": rows["class_name"].to_numpy(),
                         "x": xyxy[:, 0], "y": xyxy[:, 1], "w": xyxy[:, 2] - xyxy[:, 0], "h": xyxy[:, 3] - xyxy[:, 1],
                         "rad_id": rows["rad_id"].to_numpy() if "rad_id" in rows else ""})


def read_kaggle(path: Path, findings) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The Kaggle ``train.csv`` -> (reader labels: one row per image and reader, the 14 findings and
    "No finding" as 1/0, the other findings blank; boxes; counts)."""
    c = card()
    table = read_table(path, c["layout"]["kaggle_columns"])
    _check_ids(table, path)
    kaggle = c["findings_kaggle"]
    table["class_name"] = _canonical(table["class_name"], kaggle, path, "class_name")
    ids = pd.to_numeric(table["class_id"], errors="coerce")
    wrong = ids.to_numpy() != table["class_name"].map(kaggle.index).to_numpy()
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise CxrDataError(path, f"line {i + 2}: class_id {table['class_id'].iloc[i]!r} is not that of "
                                 f"{table['class_name'].iloc[i]!r} ({kaggle.index(table['class_name'].iloc[i])})")
    counts = {"kaggle_rows": len(table)}
    boxes = read_boxes(table, path, counts)
    counts.update(kaggle_boxes=len(boxes), kaggle_no_finding_rows=int((table["class_name"] == c["no_finding"]).sum()))
    marks = table.groupby(["image_id", "rad_id", "class_name"]).size().unstack(fill_value=0).clip(upper=1)
    labels = pd.DataFrame(np.nan, index=marks.index, columns=list(findings), dtype=np.float32)
    labels[kaggle] = marks.reindex(columns=kaggle, fill_value=0).astype(np.float32)
    local = [f for f in kaggle if f != c["no_finding"]]
    both = (labels[c["no_finding"]] == 1) & (labels[local].sum(axis=1) > 0)
    if both.any():
        log.warning("%s: %d reader(s) of an image marked %r and a finding, e.g. %s", path, int(both.sum()),
                    c["no_finding"], both.index[both][0])
    counts["kaggle_normal_images"] = int((labels[c["no_finding"]].groupby(level=0).min() == 1).sum())
    return labels.reset_index(), boxes, counts


def _label_columns(table: pd.DataFrame, path: Path, findings) -> pd.DataFrame:
    """An image_labels table with its label columns in the card's spelling; a missing one is an error."""
    table = table.rename(columns={a: f for a, f in card().get("aliases", {}).items() if a in table and f not in table})
    absent = [f for f in findings if f not in table.columns]
    if absent:
        raise CxrDataError(path, f"missing label column(s) {absent}; header is {list(table.columns)}")
    return table


def read_reader_labels(path: Path, findings) -> pd.DataFrame:
    """``image_labels_train.csv``: one row per image and reader, the findings as 1/0/blank."""
    table = _label_columns(read_table(path, ["image_id", "rad_id"]), path, findings)
    _check_ids(table, path)
    dup = table.duplicated(["image_id", "rad_id"])
    if dup.any():
        raise CxrDataError(path, f"line {int(np.flatnonzero(dup.to_numpy())[0]) + 2}: a second row of "
                                 f"{table['image_id'][dup].iloc[0]} by {table['rad_id'][dup].iloc[0]}")
    out = table[["image_id", "rad_id"]].copy()
    for f in findings:
        out[f] = cells(table[f].str.strip(), path, f)
    return out


def read_consensus(path: Path, findings) -> pd.DataFrame:
    """``image_labels_test.csv``: the consensus labels, one row per image ("Other disease" accepted)."""
    table = _label_columns(read_table(path, ["image_id"]), path, findings)
    _check_ids(table, path, reader=False)
    dup = table["image_id"].duplicated()
    if dup.any():
        raise CxrDataError(path, f"line {int(np.flatnonzero(dup.to_numpy())[0]) + 2}: image "
                                 f"{table['image_id'][dup].iloc[0]} has more than one consensus row")
    out = pd.DataFrame({f: cells(table[f].str.strip(), path, f) for f in findings}, index=table["image_id"].to_numpy())
    return out


def read_annotations(path: Path, counts: dict, reader: bool) -> pd.DataFrame:
    """``annotations_{train,test}.csv`` -> boxes (the 22 local labels; "No finding" rows have none)."""
    c = card()
    table = read_table(path, [col for col in c["layout"]["annotation_columns"] if reader or col != "rad_id"],
                       optional=["rad_id"])
    _check_ids(table, path, reader=reader)
    table["class_name"] = _canonical(table["class_name"], [*c["findings_local"], c["no_finding"]], path, "class_name")
    return read_boxes(table, path, counts)


def aggregate(reader_labels: pd.DataFrame, findings, rule: str) -> pd.DataFrame:
    """Per-reader labels -> one row per image (indexed by image_id) under ``rule``: ``majority``
    (marked by more than half of the image's readers), ``any`` (by at least one; "No finding" only
    when every reader said so) or ``uncertain`` (majority -> 1, a minority -> -1). A finding no
    reader labelled stays blank."""
    groups = reader_labels.groupby("image_id", sort=False)[list(findings)]
    votes, n = groups.sum(min_count=1).to_numpy(np.float64), groups.count().to_numpy(np.float64)
    index = groups.size().index
    if rule == "majority":
        out = (2 * votes > n).astype(np.float32)
    elif rule == "any":
        out = (votes >= 1).astype(np.float32)
        nf = list(findings).index(card()["no_finding"])
        out[:, nf] = votes[:, nf] == n[:, nf]
    elif rule == "uncertain":
        out = np.where(2 * votes > n, 1.0, np.where(votes > 0, -1.0, 0.0)).astype(np.float32)
    else:
        raise CxrConfigError(f"unknown readers {rule!r}", key="readers", choices=tuple(card()["reader_rules"]))
    out[np.isnan(votes)] = np.nan
    return pd.DataFrame(out, index=index, columns=list(findings))


def _detect(data_dir: Path, layout: str) -> str:
    spec = card()["layout"]
    if layout not in LAYOUTS:
        raise CxrConfigError(f"unknown layout {layout!r}", key="layout", choices=LAYOUTS)
    if layout != "auto":
        return layout
    if find_file(data_dir / spec["annotations_dir"], spec["image_labels"]["train"]):
        return "physionet"
    if find_file(data_dir, spec["kaggle_labels"]):
        return "kaggle"
    raise CxrDataError(data_dir, f"neither {spec['annotations_dir']}/{spec['image_labels']['train']}(.gz) (PhysioNet "
                                 f"vindr-cxr) nor {spec['kaggle_labels'][0]}(.gz) (Kaggle VinBigData) is here; "
                                 "--data-dir is the release folder holding train/")


def _required(folder: Path, name, what: str) -> Path:
    path = find_file(folder, name)
    if path is None:
        raise CxrDataError(folder / (name if isinstance(name, str) else name[0]), f"{what} not found (.gz accepted)")
    return path


def _readers(reader_labels: pd.DataFrame) -> tuple[pd.Series, dict]:
    """Each image's readers as ``R1;R8;R9`` (by number) and the reader counts of the release."""
    pairs = reader_labels[["image_id", "rad_id"]]
    ordered = pairs.assign(n=pairs["rad_id"].str[1:].astype(int)).sort_values(["image_id", "n"])
    ordered = ordered.assign(k=ordered.groupby("image_id").cumcount())
    wide = ordered.pivot(index="image_id", columns="k", values="rad_id").fillna("")
    joined = wide[0].str.cat([wide[k] for k in wide.columns[1:]], sep=";").str.rstrip(";")
    per_image = ordered.groupby("image_id").size()
    common = int(per_image.mode().iloc[0]) if len(per_image) else 0
    odd = per_image != card()["layout"]["readers_per_image"]
    if odd.any():
        log.warning("%d image(s) read by other than %d readers, e.g. %s (%d)", int(odd.sum()),
                    card()["layout"]["readers_per_image"], per_image.index[odd][0], int(per_image[odd].iloc[0]))
    return joined, {"readers": int(pairs["rad_id"].nunique()), "readers_per_image": common,
                    "reader_label_rows": len(pairs)}


def _frame(labels: pd.DataFrame, part: str, readers, method: str, source: str, findings) -> pd.DataFrame:
    ids = labels.index.to_numpy()
    frame = pd.DataFrame({"path": [image_path(part, i) for i in ids], "image_id": ids, "patient": ids, "study": ids,
                          "view": card()["layout"]["view"], "age": np.nan, "sex": ""})
    frame = pd.concat([frame, labels[list(findings)].reset_index(drop=True)], axis=1)
    return frame.assign(readers=readers, label_method=method, label_source=source, release_part=part)


def _physionet(data_dir: Path, findings, rule: str, files: dict, counts: dict):
    """The PhysioNet release -> (manifest rows, boxes, reader labels, label file)."""
    spec = card()["layout"]
    folder = data_dir / spec["annotations_dir"]
    path = _required(folder, spec["image_labels"]["train"], "PhysioNet training labels")
    files["labels_train"] = str(path)
    reader_labels = read_reader_labels(path, findings)
    readers, facts = _readers(reader_labels)
    counts.update(facts, train_images=len(readers))
    n = facts["readers_per_image"]
    train = aggregate(reader_labels, findings, rule)
    parts = [_frame(train, "train", readers.loc[train.index].to_numpy(), RULE_NAMES[rule].format(n=n), path.name,
                    findings)]
    test_path = find_file(folder, spec["image_labels"]["test"])
    if test_path is None:
        log.warning("%s: no %s(.gz): no test images", folder, spec["image_labels"]["test"])
    else:
        files["labels_test"] = str(test_path)
        test = read_consensus(test_path, findings)
        both = test.index.intersection(train.index)
        if len(both):
            raise CxrDataError(test_path, f"{len(both)} image(s) also in {path.name}, e.g. {both[0]}")
        counts["test_images"] = len(test)
        parts.append(_frame(test, "test", "consensus", "consensus of 5 radiologists", test_path.name, findings))
    frame = pd.concat(parts, ignore_index=True)
    boxes = []
    for part in ("train", "test"):
        box_path = find_file(folder, spec["annotations"][part])
        if box_path is None:
            log.warning("%s: no %s(.gz): no %s boxes", folder, spec["annotations"][part], part)
            continue
        files[f"boxes_{part}"] = str(box_path)
        b = read_annotations(box_path, counts, reader=part == "train")
        unknown = sorted(set(b["image_id"]) - set(frame.loc[frame["release_part"] == part, "image_id"]))
        if unknown:
            raise CxrDataError(box_path, f"{len(unknown)} boxed image(s) not among the {part} labels, "
                                         f"e.g. {unknown[:3]}")
        counts[f"annotations_{part}_boxes"] = len(b)
        boxes.append(b)
    boxes = pd.concat(boxes, ignore_index=True) if boxes else pd.DataFrame(columns=[*BOX_COLUMNS, *BOX_EXTRA])
    return frame, boxes, reader_labels, path


def _kaggle(data_dir: Path, findings, rule: str, files: dict, counts: dict):
    """The Kaggle layout -> (manifest rows, boxes, reader labels, label file)."""
    path = _required(data_dir, card()["layout"]["kaggle_labels"], "Kaggle VinBigData train.csv")
    files["labels_train"] = str(path)
    reader_labels, boxes, facts = read_kaggle(path, findings)
    readers, reader_facts = _readers(reader_labels)
    counts.update(facts, **reader_facts, train_images=len(readers))
    train = aggregate(reader_labels, findings, rule)
    method = RULE_NAMES[rule].format(n=reader_facts["readers_per_image"])
    frame = _frame(train, "train", readers.loc[train.index].to_numpy(), method, path.name, findings)
    return frame, boxes, reader_labels, path


def load(data_dir, split: str = "official", seed: int | None = None, layout: str = "auto",
         readers: str | None = None, val_fraction: float | None = None, fractions=None) -> SourceData:
    """Read a VinDr-CXR folder (PhysioNet or Kaggle layout) into a split manifest (see the module doc)."""
    data_dir, c, vocab, seed = begin(NAME, data_dir, seed)
    rule = readers or c["default_readers"]
    if rule not in c["reader_rules"]:
        raise CxrConfigError(f"unknown readers {rule!r}", key="readers", choices=tuple(c["reader_rules"]))
    kind = _detect(data_dir, layout)
    files = {"layout": "PhysioNet vindr-cxr" if kind == "physionet" else "Kaggle VinBigData", "readers": rule}
    counts: dict = {}
    read = _physionet if kind == "physionet" else _kaggle
    frame, boxes, reader_labels, label_path = read(data_dir, vocab.findings, rule, files, counts)
    if split == "official":
        frame = splits.official_split(
            frame, frame.loc[frame["release_part"] == "train", "image_id"],
            frame.loc[frame["release_part"] == "test", "image_id"],
            val_fraction=c["splits"]["official_val_fraction"] if val_fraction is None else val_fraction,
            seed=seed, lists_source=str(label_path))
    else:
        frame = random_split(frame, split, seed, fractions, c)
    reader_labels = reader_labels.reset_index(drop=True)
    reader_labels.insert(1, "study", reader_labels["image_id"])     # prepare keeps the rows of kept studies
    return finish(NAME, data_dir, frame, vocab.findings, label_path, boxes=boxes.reset_index(drop=True),
                  bbox_frame=None, files=files, release_counts=counts, tables={"reader_labels": reader_labels})

