"""Boxes from a heatmap, the ChestX-ray8 way (Wang et al. 2017, §4.2): normalize to [0, 255],
threshold at each level, one box around each 8-connected region. Explain draws them on overlays;
localize scores them against the ground truth."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HEAT_THRESHOLDS = (60, 180)


def boxes_from_heatmap(heat: np.ndarray, levels=HEAT_THRESHOLDS) -> list[tuple[float, float, float, float]]:
    """(x, y, w, h) pixel boxes around each connected region of ``heat`` >= each level, after
    min-max normalisation of the heatmap to [0, 255]; a region found at both levels counts once."""
    heat = np.asarray(heat, np.float64)
    lo, hi = heat.min(), heat.max()
    if hi <= lo:
        return []
    scaled = (heat - lo) * (255.0 / (hi - lo))
    boxes = []
    for level in levels:
        labels, _ = ndimage.label(scaled >= level, structure=np.ones((3, 3)))
        for sl in ndimage.find_objects(labels):
            if sl is not None:
                ys, xs = sl
                boxes.append((float(xs.start), float(ys.start), float(xs.stop - xs.start), float(ys.stop - ys.start)))
    return list(dict.fromkeys(boxes))


THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)


def intersection(a, b) -> float:
    """Intersection area of two (x, y, w, h) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def iobb(gt, detected) -> float:
    """Intersection over the *detected* box's area (ChestX-ray8's IoBB)."""
    area = detected[2] * detected[3]
    return intersection(gt, detected) / area if area > 0 else 0.0


def score_image(gt_boxes, detected, thresholds=THRESHOLDS) -> list[dict]:
    """Rows (one per ground-truth box and T): best IoU, best IoBB, correct, and the image's
    false-positive count for that T (repeated on each of its rows)."""
    rows = []
    for t in thresholds:
        used = set()
        per_gt = []
        for g in gt_boxes:
            ious = [iou(g, d) for d in detected]
            iobbs = [iobb(g, d) for d in detected]
            hits = [k for k in range(len(detected)) if ious[k] > t or iobbs[k] > t]
            used.update(hits)
            per_gt.append((max(ious, default=0.0), max(iobbs, default=0.0), bool(hits)))
        fp = len(detected) - len(used)
        rows += [{"T": t, "iou": a, "iobb": b, "correct": c, "false_positives": fp} for a, b, c in per_gt]
    return rows
