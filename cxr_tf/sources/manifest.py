"""The manifest: one row per image, the contract every source obeys.

Columns, in order: ``path, image_id, patient, study, view, age, sex``, one float column per finding
(1 / 0 / -1 / blank, see :mod:`cxr_tf.vocab.findings`), then ``split`` (``train``, ``val``, ``test``).
Sources may add extra columns after these (e.g. ``follow_up``, ``orig_width``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrDataError, LeakageError

BASE_COLUMNS = ("path", "image_id", "patient", "study", "view", "age", "sex")
SPLITS = ("train", "val", "test")
LABEL_STATES = (1.0, 0.0, -1.0)


def columns(findings: Sequence[str]) -> list[str]:
    """The contract's columns for a vocabulary, in order."""
    return [*BASE_COLUMNS, *findings, "split"]


def order(frame: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """Put the contract columns first, extras after, keeping every column."""
    first = [c for c in columns(findings) if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def validate(frame: pd.DataFrame, findings: Sequence[str], *, require_split: bool = True,
             where: str | Path | None = None) -> pd.DataFrame:
    """Check a manifest against the contract and return it; raise :class:`CxrDataError` naming
    ``where`` (the file or source) on any violation, and :class:`LeakageError` on patient overlap."""
    wanted = [c for c in columns(findings) if require_split or c != "split"]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise CxrDataError(where, f"manifest lacks column(s) {missing}")
    for col in ("path", "image_id", "patient"):
        bad = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if bad.any():
            raise CxrDataError(where, f"{int(bad.sum())} row(s) with an empty {col!r}, "
                                      f"e.g. row {int(np.flatnonzero(bad.to_numpy())[0])}")
    dup = frame["image_id"].duplicated()
    if dup.any():
        raise CxrDataError(where, f"duplicate image_id(s), e.g. {frame.loc[dup, 'image_id'].iloc[0]!r}")
    values = frame[list(findings)].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isnan(values) | np.isin(values, LABEL_STATES)
    if not ok.all():
        r, c = np.argwhere(~ok)[0]
        raise CxrDataError(where, f"label {findings[c]!r} of {frame['image_id'].iloc[r]!r} is "
                                  f"{values[r, c]!r}; allowed: 1, 0, -1, blank")
    if require_split:
        bad = ~frame["split"].isin(SPLITS)
        if bad.any():
            raise CxrDataError(where, f"unknown split value(s) {sorted(set(frame.loc[bad, 'split']))}; "
                                      f"allowed: {SPLITS}")
        assert_patient_disjoint(frame, where=where)
    return frame


def assert_patient_disjoint(frame: pd.DataFrame, where: str | Path | None = None) -> None:
    """Raise :class:`LeakageError` if any patient has images in more than one split."""
    per_patient = frame.groupby("patient", sort=False)["split"].nunique()
    shared = per_patient[per_patient > 1]
    if len(shared):
        examples = ", ".join(map(str, shared.index[:5]))
        raise LeakageError(f"{where or 'manifest'}: {len(shared)} patient(s) appear in more than one "
                           f"split (e.g. {examples}); splits must be patient-disjoint")


def split_summary(frame: pd.DataFrame, findings: Sequence[str]) -> dict:
    """Counts per split: images, patients, positives/uncertain per finding, and views."""
    out = {}
    for split, part in frame.groupby("split", sort=False):
        labels = part[list(findings)]
        out[split] = {
            "images": int(len(part)),
            "patients": int(part["patient"].nunique()),
            "positives": {f: int((labels[f] == 1).sum()) for f in findings},
            "uncertain": {f: int((labels[f] == -1).sum()) for f in findings},
            "views": {str(k): int(v) for k, v in part["view"].value_counts(dropna=False).items()},
        }
    return {s: out[s] for s in SPLITS if s in out}


def write(frame: pd.DataFrame, path: str | Path) -> None:
    """Atomically write a manifest CSV."""
    atomic.write_csv(path, frame)


def read(path: str | Path, findings: Sequence[str]) -> pd.DataFrame:
    """Read and validate a manifest CSV written by :func:`write`."""
    path = Path(path)
    if not path.is_file():
        raise CxrDataError(path, "manifest file not found")
    frame = pd.read_csv(path, dtype={"image_id": str, "patient": str, "study": str,
                                     "path": str, "view": str, "sex": str})
    return validate(frame, findings, require_split="split" in frame.columns, where=path)
