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
