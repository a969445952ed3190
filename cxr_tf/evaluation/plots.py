"""Figures a person wants to look at: ROC and PR curves for all findings on one page, and a grid
of per-finding confusion matrices (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from cxr_tf.core import atomic  # noqa: E402
from cxr_tf.vocab.findings import IGNORE  # noqa: E402


def _grid(n: int):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, path) -> None:
    fig.tight_layout()
    with atomic.atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def roc_grid(y, p, findings, aucs, path) -> None:
    """ROC curve per finding, one page."""
    fig, axes = _grid(len(findings))
    for j, (f, ax) in enumerate(zip(findings, axes)):
        keep = y[:, j] != IGNORE
        if len(np.unique(y[keep, j])) == 2:
            fpr, tpr, _ = roc_curve(y[keep, j], p[keep, j])
            ax.plot(fpr, tpr, lw=1.5)
        ax.plot([0, 1], [0, 1], "k--", lw=0.6)
        ax.set_title(f"{f}\nAUROC {aucs[j]:.3f}", fontsize=9)
        ax.set_xlabel("1 - specificity", fontsize=8)
        ax.set_ylabel("sensitivity", fontsize=8)
    _save(fig, path)


def pr_grid(y, p, findings, path) -> None:
    """Precision-recall curve per finding, one page, with prevalence as the chance line."""
    fig, axes = _grid(len(findings))
    for j, (f, ax) in enumerate(zip(findings, axes)):
        keep = y[:, j] != IGNORE
        prev = float(np.mean(y[keep, j] == 1)) if keep.any() else 0.0
        if len(np.unique(y[keep, j])) == 2:
            prec, rec, _ = precision_recall_curve(y[keep, j], p[keep, j])
            ax.plot(rec, prec, lw=1.5)
        ax.axhline(prev, color="k", ls="--", lw=0.6)
        ax.set_title(f"{f}\nprevalence {prev:.3f}", fontsize=9)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
    _save(fig, path)


def confusion_grid(table, path) -> None:
    """2x2 confusion matrix per finding at its chosen threshold (rows: truth, columns: call)."""
    fig, axes = _grid(len(table))
    for (_, row), ax in zip(table.iterrows(), axes):
        m = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], dtype=float)
        ax.imshow(m, cmap="Blues")
        for (i, k), v in np.ndenumerate(m):
            ax.text(k, i, f"{int(v)}", ha="center", va="center", fontsize=9,
                    color="white" if v > m.max() / 2 else "black")
        ax.set_xticks([0, 1], ["neg", "pos"])
        ax.set_yticks([0, 1], ["neg", "pos"])
        ax.set_title(f"{row['finding']} @ {row['threshold']:.2f}", fontsize=9)
    _save(fig, path)
