"""NIH ChestX-ray14 on disk (see ``datasets/chestxray14/card.toml``) -> manifest, boxes, missing files.

Reads both Data_Entry headers: the 2017 one (a trailing comma on every line, which yields an empty
unnamed column) and the v2020 one; ``Patient Gender`` or ``Patient Sex``; the bracketed header
names ``OriginalImage[Width,Height]`` that hold a comma; the official lists (no trailing newline);
the box list with its 9-name/6-field header and ``Infiltrate`` spelling; and images in ``images/``
or ``images_0NN/images/``.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.datasets.chestxray14 import relabels
from cxr_tf.sources import splits
from cxr_tf.sources.base import BOX_COLUMNS, SourceData, begin, find_file, finish, open_text, random_split
from cxr_tf.sources.base import card as _card
from cxr_tf.vocab.findings import Vocabulary

log = logging.getLogger(__name__)
NAME = "chestxray14"
OPTIONS = {
    "val_fraction": "official split: fraction of train_val patients carved out for validation "
                    "[default: the card's 0.1]",
    "fractions": "random split: patient fractions [train, val, test] [default: [0.8, 0.1, 0.1]]",
    "test_labels": "official split: nih (the report-mined labels, default) or google2019 (Google's "
                   "radiologist-adjudicated Airspace opacity, Fracture, Nodule or mass and Pneumothorax "
                   "for its 1,962 test images; see datasets/chestxray14/relabels.py)",
}
TEST_LABELS = ("nih", "google2019")
_BRACKET = re.compile(r"^(.*)\[(.*)\]$")


def card() -> dict:
    """The ChestX-ray14 dataset card."""
    return _card(NAME)


def _expand_header(fields: list[str]) -> list[str]:
    """Header names, with ``Name[a,b]`` expanded to ``Name_a``, ``Name_b`` and a trailing empty
    name (the 2017 release's trailing comma) dropped."""
    joined = ",".join(fields)
    parts = re.split(r",(?![^\[]*\])", joined)
    while parts and parts[-1].strip() == "":
        parts.pop()
    names = []
    for part in parts:
        m = _BRACKET.match(part.strip())
        if m:
            names += [f"{m.group(1).strip()}_{sub.strip()}" for sub in m.group(2).split(",")]
        else:
            names.append(part.strip())
    return names


def read_data_entry(path: Path, vocab: Vocabulary) -> pd.DataFrame:
    """Read a Data_Entry CSV into manifest columns (without ``path`` and ``split``, which
    :func:`load` adds); errors name the file and line."""
    cols = card()["layout"]["columns"]
    with open_text(path) as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise CxrDataError(path, "empty label file")
    names = _expand_header(rows[0])
    body = rows[1:]
    width = len(names)
    for lineno, row in enumerate(body, start=2):
        while len(row) > width and row[-1] == "":
            row.pop()  # the 2017 release's trailing comma
        if len(row) != width:
            raise CxrDataError(path, f"line {lineno} has {len(row)} fields, the header {width}")
    raw = pd.DataFrame(body, columns=names, dtype=str)
    sex_col = next((c for c in cols["sex"] if c in raw.columns), None)
    need = [cols["image"], cols["labels"], cols["patient"], cols["age"], cols["view"]]
    absent = [c for c in need if c not in raw.columns] + ([] if sex_col else [" or ".join(cols["sex"])])
    if absent:
        raise CxrDataError(path, f"missing column(s) {absent}; header is {names}")
    image_id = raw[cols["image"]].str.strip()
    labels = _label_matrix(raw[cols["labels"]], image_id, vocab, path)
    age = pd.to_numeric(raw[cols["age"]].str.strip().str.rstrip("YyMmDd"), errors="coerce")
    frame = pd.DataFrame({
        "image_id": image_id,
        "patient": raw[cols["patient"]].str.strip(),
        "study": image_id.str.replace(r"\.png$", "", regex=True),
        "view": raw[cols["view"]].str.strip(),
        "age": age,
        "sex": raw[sex_col].str.strip(),
    })
    frame = pd.concat([frame, pd.DataFrame(labels, columns=vocab.findings)], axis=1)
    if cols["follow_up"] in raw.columns:
        frame["follow_up"] = pd.to_numeric(raw[cols["follow_up"]], errors="coerce").astype("Int64")
    return frame


def _label_matrix(labels: pd.Series, image_id: pd.Series, vocab: Vocabulary, path: Path) -> np.ndarray:
    """``A|B`` strings -> a 0/1 matrix in vocabulary order; unknown labels raise, naming the row."""
    c = card()
    out = np.zeros((len(labels), len(vocab)), dtype=np.float32)
    cache: dict[str, list[int]] = {}
    for i, text in enumerate(labels.to_numpy()):
        idx = cache.get(text)
        if idx is None:
            tokens = [t.strip() for t in str(text).split(c["label_separator"])]
            if tokens == [c["no_finding"]]:
                idx = []
            else:
                where = f"{path} (line {i + 2}, {image_id.iloc[i]})"
                if c["no_finding"] in tokens or "" in tokens:
                    raise CxrDataError(where, f"malformed label {text!r}")
                idx = [vocab.index(vocab.canonical(t, where)) for t in tokens]
            cache[text] = idx
        out[i, idx] = 1.0
    return out


def read_list(path: Path) -> list[str]:
    """An official list: one file name per line; blank lines and the missing final newline are fine."""
    with open_text(path) as fh:
        return [line.strip() for line in fh if line.strip()]


def read_boxes(path: Path, vocab: Vocabulary) -> pd.DataFrame:
    """``BBox_List_2017.csv`` -> image_id, finding (vocabulary spelling), x, y, w, h."""
    with open_text(path) as fh:
        rows = list(csv.reader(fh))
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        fields = [f.strip() for f in row]
        while fields and fields[-1] == "":
            fields.pop()
        if not fields:
            continue
        if len(fields) != 6:
            raise CxrDataError(path, f"line {lineno}: expected 6 fields (image, label, x, y, w, h), "
                                     f"got {len(fields)}")
        try:
            x, y, w, h = map(float, fields[2:])
        except ValueError:
            raise CxrDataError(path, f"line {lineno}: non-numeric box {fields[2:]}") from None
        if w <= 0 or h <= 0:
            raise CxrDataError(path, f"line {lineno}: box with non-positive size {fields[2:]}")
        out.append((fields[0], vocab.canonical(fields[1], f"{path} (line {lineno})"), x, y, w, h))
    return pd.DataFrame(out, columns=BOX_COLUMNS)


def index_images(data_dir: Path) -> dict[str, Path]:
    """Map image file name -> path over ``images/`` and ``images_*/images/`` (first found wins)."""
    found: dict[str, Path] = {}
    for pattern in card()["layout"]["image_dirs"]:
        for folder in sorted(data_dir.glob(pattern)):
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and not entry.name.startswith("."):
                    if entry.name in found:
                        log.warning("%s also at %s; using %s", entry.name, entry, found[entry.name])
                        continue
                    found[entry.name] = entry
    return found


def load(data_dir, split: str = "official", seed: int | None = None,
         val_fraction: float | None = None, fractions=None, test_labels: str = "nih") -> SourceData:
    """Read a ChestX-ray14 directory into a split manifest, boxes and the list of missing images
    (``test_labels=google2019``: Google's expert labels as the test split's, see :mod:`.relabels`)."""
    if test_labels not in TEST_LABELS:
        raise CxrConfigError(f"unknown test_labels {test_labels!r}", key="test_labels", choices=TEST_LABELS)
    data_dir, c, vocab, seed = begin(NAME, data_dir, seed)
    layout, split_cfg = c["layout"], c["splits"]
    label_file = find_file(data_dir, layout["label_files"])
    if label_file is None:
        raise CxrDataError(data_dir, f"no label file; expected one of {layout['label_files']}")
    frame = read_data_entry(label_file, vocab)
    files = {"labels": str(label_file)}
    if split == "official":
        lists = {k: find_file(data_dir, layout[k]) for k in ("train_val_list", "test_list")}
        absent = [layout[k] for k, p in lists.items() if p is None]
        if absent:
            raise CxrDataError(data_dir, f"official split needs {absent}; use --split random "
                                         "or add the lists")
        files.update({k: str(p) for k, p in lists.items()})
        frame = splits.official_split(
            frame, read_list(lists["train_val_list"]), read_list(lists["test_list"]),
            val_fraction=split_cfg["official_val_fraction"] if val_fraction is None else val_fraction,
            seed=seed, lists_source=f"{lists['train_val_list']} / {lists['test_list']}")
    else:
        frame = random_split(frame, split, seed, fractions, c)
    images = index_images(data_dir)
    paths = frame["image_id"].map(images)
    present = paths.notna()
    frame.insert(0, "path", [p.relative_to(data_dir).as_posix() if isinstance(p, Path) else f"images/{i}"
                     for p, i in zip(paths, frame["image_id"])])
    box_file = find_file(data_dir, layout["bbox_file"])
    boxes = pd.DataFrame(columns=BOX_COLUMNS)
    if box_file is not None:
        boxes = read_boxes(box_file, vocab)
        files["boxes"] = str(box_file)
        unknown = sorted(set(boxes["image_id"]) - set(frame["image_id"]))
        if unknown:
            raise CxrDataError(box_file, f"{len(unknown)} boxed image(s) not in {label_file.name}, "
                                         f"e.g. {unknown[:3]}")
    counts = {"images": len(frame), "patients": int(frame["patient"].nunique()),
              "bbox_boxes": len(boxes), "bbox_images": int(boxes["image_id"].nunique())}
    if split == "official":
        counts.update(train_val_images=int((frame["split"] != "test").sum()),
                      test_images=int((frame["split"] == "test").sum()))
    findings, excluded = vocab.findings, {}
    if test_labels == "google2019":
        frame, findings, more = relabels.apply(frame, findings, data_dir, c, excluded, files)
        counts.update(more)
        boxes = boxes[boxes["image_id"].isin(set(frame["image_id"]))].reset_index(drop=True)
        present = frame["image_id"].map(images).notna()
    return finish(NAME, data_dir, frame, findings, label_file, present.to_numpy(), boxes=boxes,
                  bbox_frame=float(layout["bbox_frame"]), files=files, release_counts=counts, excluded=excluded)
