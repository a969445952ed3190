"""Overlay figures: the original image, the heatmap over it, the predicted probability, and the
ground-truth and generated boxes when known (matplotlib, Agg, written atomically)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cxr_tf.core import atomic  # noqa: E402


def save_overlay(path, image: np.ndarray, heat: np.ndarray, title: str, gt_boxes=(), det_boxes=(),
                 alpha: float = 0.45) -> None:
    """Write a PNG with the grayscale image, the heatmap (jet) on top, and boxes: ground truth in
    green, boxes generated from the heatmap in dashed yellow."""
    h, w = image.shape
    fig = plt.figure(figsize=(5, 5 * h / w + 0.4))
    ax = fig.add_axes([0, 0, 1, 1 - 0.4 / (5 * h / w + 0.4)])
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
    ax.imshow(np.ma.masked_less(heat, 0.05), cmap="jet", alpha=alpha, vmin=0, vmax=1, interpolation="bilinear")
    for (x, y, bw, bh) in gt_boxes:
        ax.add_patch(Rectangle((x, y), bw, bh, fill=False, edgecolor="lime", linewidth=2))
    for (x, y, bw, bh) in det_boxes:
        ax.add_patch(Rectangle((x, y), bw, bh, fill=False, edgecolor="yellow", linewidth=1, linestyle="--"))
    ax.set_axis_off()
    fig.suptitle(title, fontsize=10, y=0.995)
    with atomic.atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
