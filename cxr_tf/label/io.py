"""What ``cxr-tf label`` reads and writes.

Inputs, by what the path is: a CSV in the CheXpert labeler's convention (headerless, one column,
multi-line reports quoted); a CSV with a header and ``column`` naming the report column; a folder
of ``.txt`` reports (key: the relative ``file``); the MIMIC-CXR reports, as ``mimic-cxr-reports.zip``
or its unpacked ``files/pNN/pNNNNNNNN/sNNNNNNNN.txt`` tree (keys: ``subject_id``, ``study_id``).
The output keeps the input's rows and key columns, then one column per observation and a
``labeler`` column naming the labeler and its version; it is written atomically.
"""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrDataError

_MIMIC = re.compile(r"(?:^|/)files/p\d{2}/p(?P<subject>\d+)/s(?P<study>\d+)\.txt$")


def read_reports(path, column: str | None = None) -> tuple[pd.DataFrame, list[str], str]:
    """(key columns, report texts, what the input was) for any supported input."""
    path = Path(path)
    if not path.exists():
        raise CxrDataError(path, "no such file or folder")
    if path.is_dir():
        return _folder(path)
    if zipfile.is_zipfile(path):
        return _zip(path)
    return _csv(path, column)


def _mimic_rows(names) -> list[tuple[str, str, str]]:
    return [(m["subject"], m["study"], n) for n in names for m in [_MIMIC.search(n)] if m]


def _folder(path: Path):
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise CxrDataError(path, "no .txt reports in this folder")
    rels = [p.relative_to(path).as_posix() for p in files]
    mimic = _mimic_rows(rels)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    if len(mimic) == len(rels):
        keys = pd.DataFrame(mimic, columns=["subject_id", "study_id", "report_path"])
        return keys, texts, "MIMIC-CXR reports tree"
    return pd.DataFrame({"file": rels}), texts, "folder of .txt reports"


def _zip(path: Path):
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist() if n.endswith(".txt"))
            mimic = _mimic_rows(names)
            if not mimic:
                raise CxrDataError(path, "a zip without files/pNN/pNNNNNNNN/sNNNNNNNN.txt reports")
            texts = [zf.read(n).decode("utf-8", errors="replace") for _, _, n in mimic]
    except zipfile.BadZipFile as exc:
        raise CxrDataError(path, f"cannot read the archive: {exc}") from None
    rows = [(s, t, re.sub(r"^.*?(?=files/)", "", n)) for s, t, n in mimic]
    return pd.DataFrame(rows, columns=["subject_id", "study_id", "report_path"]), texts, "MIMIC-CXR reports zip"


def _csv(path: Path, column: str | None):
    if column:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise CxrDataError(path, f"cannot read as CSV: {exc}") from None
        if column not in frame.columns:
            raise CxrDataError(path, f"no column {column!r}; header is {list(frame.columns)}")
        return frame.drop(columns=[column]), frame[column].tolist(), f"CSV column {column!r}"
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CxrDataError(path, f"not a UTF-8 text CSV of reports: {exc}") from None
    wide = [i + 1 for i, r in enumerate(rows) if len(r) > 1]
    if wide:
        raise CxrDataError(path, f"line {wide[0]} has {len(rows[wide[0] - 1])} fields: a headerless report CSV "
                                 "(the CheXpert labeler's convention) has one; for a CSV with a header, give --column")
    texts = [r[0] if r else "" for r in rows]
    return pd.DataFrame(index=range(len(texts))), texts, "report CSV (CheXpert labeler convention)"


def write_labels(path, keys: pd.DataFrame, texts: list[str], labels: pd.DataFrame, kind: str, labeler: str,
                 keep_text: bool) -> pd.DataFrame:
    """Keys, the report text (``Reports``, for the CheXpert convention), labels and ``labeler``,
    written atomically; returns the frame."""
    parts = [keys.reset_index(drop=True)]
    if keep_text:
        parts.append(pd.DataFrame({"Reports": texts}))
    parts.append(labels.reset_index(drop=True))
    out = pd.concat(parts, axis=1).assign(labeler=labeler)
    atomic.write_csv(path, out)
    return out
