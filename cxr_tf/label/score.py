"""Scoring a labeler against expert labels: per-finding confusion counts, precision, recall and F1,
and micro-F1 over a set of findings (positive = 1; everything else, uncertain included, is not).

Also the reader of the OpenI gold standard in NegBio's format (``filename`` plus the 14 NIH
findings as 0/1, one row per report, in the order of the reports CSV) and the fixed split the
labeler was developed on: ``fold(filename)`` is CRC32 of the file name modulo 5; the rules were
written while reading folds 0-3 only, and fold 4 is the held-out estimate.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrDataError

NIH14 = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
         "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
CHESTXRAY8 = NIH14[:8]                            # the original eight findings of ChestX-ray8
GOLD13 = [f for f in NIH14 if f != "Hernia"]      # the findings the OpenI gold set has positives for
# The CheXpert vocabulary's names of the findings both vocabularies share.
SHARED_CHEXPERT = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion",
                   "Consolidation": "Consolidation", "Edema": "Edema", "Pneumonia": "Pneumonia",
                   "Pneumothorax": "Pneumothorax"}
HELD_OUT_FOLD, FOLDS = 4, 5


def fold(filename: str, folds: int = FOLDS) -> int:
    """The development fold of a report, from its file name alone (stable under reordering)."""
    return zlib.crc32(str(filename).encode()) % folds


def read_gold(path) -> pd.DataFrame:
    """An expert label file in NegBio's OpenI format: ``filename`` and finding columns of 0/1."""
    path = Path(path)
    if not path.is_file():
        raise CxrDataError(path, "no such gold label file")
    frame = pd.read_csv(path)
    missing = [c for c in ["filename", *NIH14] if c not in frame.columns]
    if missing:
        raise CxrDataError(path, f"no column(s) {missing}; header is {list(frame.columns)}")
    bad = frame[NIH14].isna().any(axis=1) | ~frame[NIH14].isin([0, 1]).all(axis=1)
    if bad.any():
        raise CxrDataError(path, f"{int(bad.sum())} row(s) with finding values other than 0/1, "
                                 f"first at line {int(np.flatnonzero(bad.to_numpy())[0]) + 2}")
    return frame


def score(pred: pd.DataFrame, gold: pd.DataFrame, findings, names: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """(per-finding table, summary) of ``pred`` against ``gold`` over ``findings`` (gold's names;
    ``names`` maps them to ``pred``'s where they differ). The table has tp, fp, fn, tn, precision,
    recall, f1 per finding; the summary has the micro counts and micro precision, recall, F1."""
    if len(pred) != len(gold):
        raise CxrDataError(None, f"{len(pred)} labelled rows against {len(gold)} gold rows")
    names = names or {}
    rows = []
    for f in findings:
        p = pred[names.get(f, f)].to_numpy() == 1
        t = gold[f].to_numpy() == 1
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        rows.append({"finding": f, "gold": int(t.sum()), "tp": tp, "fp": fp, "fn": fn, "tn": int((~p & ~t).sum()),
                     **_prf(tp, fp, fn)})
    table = pd.DataFrame(rows).set_index("finding")
    tp, fp, fn = (int(table[c].sum()) for c in ("tp", "fp", "fn"))
    return table, {"tp": tp, "fp": fp, "fn": fn, **{f"micro_{k}": v for k, v in _prf(tp, fp, fn).items()}}


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1}
