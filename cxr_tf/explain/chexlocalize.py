"""CheXlocalize's localization protocol (Saporta et al., Nature Machine Intelligence 2022) beside
ChestX-ray8's.

Each heatmap is min-max scaled to [0, 1] on the original image and thresholded into a mask. The
threshold is tuned **per finding** on annotated tuning images (the validation split's boxes or
masks; where the validation split has none, as with NIH whose boxes are all in the test list, a
fixed patient-disjoint half of the annotated test images, reported as such), choosing the value in
:data:`GRID` that maximizes the mean IoU there. It is then applied to the scored images and stored
with the run. Metrics per finding, each with a percentile bootstrap CI over images:

- **mIoU**: the mean over (image, finding) pairs of IoU(heatmap mask, ground-truth mask), the
  ground truth being the union of the finding's boxes, rasterized, or the dataset's own mask;
- **hit rate**: the heatmap's maximum lies inside the ground-truth mask (CheXlocalize's pointing
  game, with no tolerance);
- **Acc at T(IoBB)**: ChestX-ray8's box accuracy with boxes drawn from the tuned mask;
- and each metric's **oracle ceiling**: the same protocol on the oracle CAM (the ground truth
  pooled to the model's CAM grid), which no CAM on that grid can be expected to beat.

Only images that carry the finding's ground truth are scored (as ChestX-ray8's Table 4 does).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from cxr_tf.explain.boxes import boxes_from_heatmap, score_image

GRID = tuple(round(float(t), 2) for t in np.arange(0.05, 1.0, 0.05))
T_BOX = 0.5


def scale01(heat: np.ndarray) -> np.ndarray:
    """Min-max scale a heatmap to [0, 1] (a constant map becomes all zero)."""
    heat = np.asarray(heat, np.float64)
    lo, hi = float(heat.min()), float(heat.max())
    return (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)


def rasterize(boxes, shape) -> np.ndarray:
    """A bool mask of ``shape`` (height, width) covering (x, y, w, h) pixel boxes (a pixel is in
    when its centre is)."""
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), bool)
    for x, y, bw, bh in boxes:
        x0, y0 = int(np.clip(np.round(x), 0, w)), int(np.clip(np.round(y), 0, h))
        x1, y1 = int(np.clip(np.round(x + bw), 0, w)), int(np.clip(np.round(y + bh), 0, h))
        mask[y0:y1, x0:x1] = True
    return mask


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def hit(heat: np.ndarray, truth: np.ndarray) -> bool:
    """Does the heatmap's maximum fall inside the ground-truth mask? (False for a flat map.)"""
    heat = np.asarray(heat)
    if not np.isfinite(heat).all() or heat.max() <= heat.min():
        return False
    return bool(truth.flat[int(np.argmax(heat))])


def pair_scores(heat: np.ndarray, truth: np.ndarray, gt_boxes, grid=GRID) -> dict:
    """One (image, finding) pair scored at every threshold of ``grid``: IoU with the ground-truth
    mask, and ChestX-ray8 box correctness at T(IoBB) = 0.5 (per ground-truth box) with boxes drawn
    from the thresholded map. Returns {"hit", "iou": [len(grid)], "correct": [len(grid), boxes]}."""
    scaled = scale01(heat)
    ious, correct = [], []
    for t in grid:
        ious.append(mask_iou(scaled >= t, truth) if scaled.max() > 0 else 0.0)
        rows = score_image(gt_boxes, boxes_from_heatmap(scaled, levels=(t * 255.0,)), thresholds=(T_BOX,))
        correct.append([r["correct"] for r in rows])
    return {"hit": hit(heat, truth), "iou": ious, "correct": correct}


def tuning_parts(pairs: pd.DataFrame, val_has_truth: bool) -> pd.Series:
    """"tune" or "score" per pair: every validation pair tunes and every test pair is scored; when
    the validation split has no ground truth, the test pairs split into two halves by a hash of the
    patient (or image) id, so no patient is in both."""
    if val_has_truth:
        return pairs["split"].map({"val": "tune"}).fillna("score")
    key = pairs["patient"].where(pairs["patient"].astype(str) != "", pairs["image_id"]).astype(str)
    return key.map(lambda k: "tune" if zlib.crc32(k.encode()) % 2 == 0 else "score")


def tune(pairs: pd.DataFrame, column: str = "iou", grid=GRID) -> dict:
    """Per finding: the threshold in ``grid`` with the highest mean ``column`` over the tuning
    pairs (the lowest such threshold on ties)."""
    out = {}
    for finding, g in pairs[pairs["part"] == "tune"].groupby("finding"):
        means = np.mean(np.stack(g[column].to_list()), axis=0)
        out[finding] = float(grid[int(np.argmax(means))])
    return out


def at_threshold(pairs: pd.DataFrame, thresholds: dict, grid=GRID, prefix: str = "") -> pd.DataFrame:
    """The scored pairs' metrics at each finding's tuned threshold: iou, hit and box accuracy
    (correct boxes / boxes) per pair; findings without a tuned threshold are left out."""
    rows = []
    for r in pairs[pairs["part"] == "score"].itertuples(index=False):
        t = thresholds.get(r.finding)
        if t is None:
            continue
        k = grid.index(t)
        correct = getattr(r, f"{prefix}correct")[k]
        rows.append({"image_id": r.image_id, "finding": r.finding, "threshold": t,
                     "iou": getattr(r, f"{prefix}iou")[k], "hit": getattr(r, f"{prefix}hit"),
                     "boxes": len(correct), "correct_boxes": int(np.sum(correct))})
    return pd.DataFrame(rows, columns=["image_id", "finding", "threshold", "iou", "hit", "boxes", "correct_boxes"])


def bootstrap(frame: pd.DataFrame, stat, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """``stat(frame)`` and its 95 % percentile CI, resampling images with replacement."""
    value = float(stat(frame))
    ids = frame["image_id"].unique()
    if len(ids) < 2 or n_boot <= 0:
        return value, float("nan"), float("nan")
    groups = {i: g for i, g in frame.groupby("image_id")}
    rng = np.random.default_rng(seed)
    draws = [float(stat(pd.concat([groups[i] for i in rng.choice(ids, len(ids))]))) for _ in range(n_boot)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return value, float(low), float(high)


def summarize(scored: pd.DataFrame, oracle: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per finding (and "mean" over findings): pairs, threshold, mIoU, hit rate and Acc at
    T(IoBB) = 0.5 with bootstrap CIs, beside the oracle's values."""
    def acc(f):
        return f["correct_boxes"].sum() / max(int(f["boxes"].sum()), 1)

    stats = {"miou": lambda f: f["iou"].mean(), "hit_rate": lambda f: f["hit"].mean(), "acc": acc}
    rows = []
    for finding, g in scored.groupby("finding", sort=True):
        o = oracle[oracle["finding"] == finding]
        row = {"finding": finding, "pairs": len(g), "threshold": float(g["threshold"].iloc[0])}
        for name, fn in stats.items():
            row[name], row[f"{name}_low"], row[f"{name}_high"] = bootstrap(g, fn, n_boot, seed)
            row[f"{name}_ceiling"] = float(fn(o)) if len(o) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        mean = {"finding": "mean", "pairs": int(table["pairs"].sum()), "threshold": float("nan")}
        for c in table.columns[3:]:
            mean[c] = float(table[c].mean())
        table = pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
    return table


def markdown(table: pd.DataFrame, tuned_on: str, grid_note: str = "") -> str:
    """The CheXlocalize table: per finding, mIoU / hit rate / Acc at T(IoBB)=0.5 with CIs, each
    beside its oracle ceiling."""
    if not len(table):
        return "No annotated images to score with the tuned thresholds."

    def cell(r, k):
        ci = "" if np.isnan(r[f"{k}_low"]) else f" [{r[f'{k}_low']:.2f}, {r[f'{k}_high']:.2f}]"
        return f"{r[k]:.2f}{ci} / {r[f'{k}_ceiling']:.2f}"

    lines = ["| finding | pairs | threshold | mIoU [95% CI] / ceiling | hit rate / ceiling | "
             "Acc T(IoBB)=0.5 / ceiling |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        t = "" if np.isnan(r["threshold"]) else f"{r['threshold']:.2f}"
        lines.append(f"| {r['finding']} | {int(r['pairs'])} | {t} | {cell(r, 'miou')} | {cell(r, 'hit_rate')} | "
                     f"{cell(r, 'acc')} |")
    lines += ["", f"Thresholds tuned per finding for mean IoU on {tuned_on}; scored on the other images. "
              "Ceiling: the same protocol on the oracle CAM" + (f" ({grid_note})" if grid_note else "") + ". "
              "CIs: 95% percentile bootstrap over images; the mean row averages the findings."]
    return "\n".join(lines)
