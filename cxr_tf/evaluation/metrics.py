"""Metric helpers on top of scikit-learn (AUROC is never hand-written)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from cxr_tf.vocab.findings import IGNORE


def auroc_per_class(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """AUROC per column (sklearn), skipping ignored (-1) entries; NaN where a column has only one
    class among its labelled entries."""
    targets, probs = np.asarray(targets), np.asarray(probs)
    out = np.full(targets.shape[1], np.nan)
    for j in range(targets.shape[1]):
        keep = targets[:, j] != IGNORE
        y = targets[keep, j]
        if len(np.unique(y)) == 2:
            out[j] = roc_auc_score(y, probs[keep, j])
    return out
