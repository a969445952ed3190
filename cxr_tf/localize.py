"""Weakly-supervised localization scored with the ChestX-ray8 protocol (Wang et al. 2017, §4.2).

Heatmap -> normalise to [0, 255] -> threshold at 60 and at 180 -> one box around each connected
region (8-connectivity) of either binary map. A ground-truth box is correctly localized at T when
some generated box has IoU > T or IoBB > T, IoBB = intersection / area of the *generated* box.
Generated boxes that localize no ground-truth box of that finding in that image are false
positives. Nothing about the ground truth (size, position, count) enters box generation.

Per finding and T: accuracy = correct ground-truth boxes / ground-truth boxes, and average false
positives = false-positive boxes / images with that finding's ground truth (Table 4's layout).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
HEAT_THRESHOLDS = (60, 180)


def boxes_from_heatmap(heat: np.ndarray, levels=HEAT_THRESHOLDS) -> list[tuple[float, float, float, float]]:
    """(x, y, w, h) pixel boxes around each connected region of ``heat`` >= each level, after
    min-max normalisation of the heatmap to [0, 255]."""
    heat = np.asarray(heat, np.float64)
    lo, hi = heat.min(), heat.max()
    if hi <= lo:
        return []
    scaled = (heat - lo) * (255.0 / (hi - lo))
    boxes = []
    for level in levels:
        labels, n = ndimage.label(scaled >= level, structure=np.ones((3, 3)))
        for sl in ndimage.find_objects(labels):
            if sl is not None:
                ys, xs = sl
                boxes.append((float(xs.start), float(ys.start), float(xs.stop - xs.start), float(ys.stop - ys.start)))
    return list(dict.fromkeys(boxes))   # the same region found at both levels counts once


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


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per finding and T: accuracy over ground-truth boxes and average false positives per image."""
    acc = rows.groupby(["T", "finding"])["correct"].mean().rename("accuracy")
    fp = (rows.drop_duplicates(["image_id", "finding", "T"]).groupby(["T", "finding"])["false_positives"]
          .mean().rename("avg_false_positives"))
    n = rows.groupby(["T", "finding"]).size().rename("boxes")
    return pd.concat([acc, fp, n], axis=1).reset_index()


def table_markdown(summary: pd.DataFrame, findings, reference: dict | None = None) -> str:
    """Table 4's layout (rows T x {Acc, AFP}, columns findings); the paper's values beside ours."""
    present = [f for f in findings if f in set(summary["finding"])]
    head = "| T(IoBB) | metric | " + " | ".join(present) + " |"
    lines = [head, "|---|---|" + "---|" * len(present)]
    idx = summary.set_index(["T", "finding"])
    ref_f = list(reference["findings"]) if reference else []
    for i, t in enumerate(sorted(summary["T"].unique())):
        for key, name, ref_key in (("accuracy", "Acc", "accuracy"), ("avg_false_positives", "AFP", "afp")):
            cells = []
            for f in present:
                ours = idx.loc[(t, f), key]
                paper = ""
                if reference and f in ref_f and t in reference["T"]:
                    paper = f" ({reference[ref_key][reference['T'].index(t)][ref_f.index(f)]:.2f})"
                cells.append(f"{ours:.2f}{paper}")
            lines.append(f"| {t} | {name} | " + " | ".join(cells) + " |")
    if reference:
        lines.append("")
        lines.append("Ours first; Wang et al. 2017 Table 4 in parentheses.")
    return "\n".join(lines)


def localize_run(run_dir, method: str = "cam", *, records=None, data_dir=None, split: str = "test",
                 batch_size: int = 16, write: bool = True) -> pd.DataFrame:
    """Score every ``split`` image that has a ground-truth box: heatmap for each boxed finding,
    mapped to original pixels, boxes, IoU/IoBB at every T. Writes ``localization.csv``,
    ``localization_summary.csv`` and ``localization.md`` into the run directory.

    Boxes come from the records' ``boxes.csv`` (original pixels), or, with ``data_dir``, are
    re-read from the dataset's own box list and scaled to each file's size."""
    from pathlib import Path

    from cxr_tf import atomic, cards
    from cxr_tf.explain import heatmaps, to_original
    from cxr_tf.models import findings_of, load_model
    from cxr_tf.pipeline import make_dataset
    from cxr_tf.prepare import load_summary

    from cxr_tf.train import run_config
    run = Path(run_dir)
    cfg = run_config(run)
    records = Path(records or cfg["records"])
    summary = load_summary(records)
    stored = int(summary["config"]["size"])
    model = load_model(run / "model.keras")
    findings = findings_of(model)
    gt = _ground_truth(records, summary, data_dir, split)
    gt = gt[gt["finding"].isin(findings)]
    wanted = set(gt["image_id"])
    ds = make_dataset(records, split, training=False, include_meta=True, batch_size=batch_size,
                      image_size=cfg["image_size"], normalization=cfg["normalization"], findings=findings)
    pairs, rows = [], []

    def flush():
        maps = heatmaps(model, np.stack([p[0] for p in pairs]), [findings.index(p[2]) for p in pairs], method)
        for (_, meta, finding), heat in zip(pairs, maps):
            full = to_original(heat, image_size=cfg["image_size"], stored_size=stored,
                               affine=meta["affine"], orig_size=meta["orig_size"])
            mine = gt[(gt["image_id"] == meta["image_id"]) & (gt["finding"] == finding)]
            truth = list(mine[["x", "y", "w", "h"]].itertuples(index=False, name=None))
            for r in score_image(truth, boxes_from_heatmap(full)):
                rows.append({"image_id": meta["image_id"], "finding": finding, **r})
        pairs.clear()

    for x, _, meta in ds:
        ids = [i.decode() for i in meta["image_id"].numpy()]
        for k, image_id in enumerate(ids):
            if image_id not in wanted:
                continue
            m = {"image_id": image_id, "affine": meta["affine"][k].numpy(), "orig_size": meta["orig_size"][k].numpy()}
            for finding in sorted(set(gt.loc[gt["image_id"] == image_id, "finding"])):
                pairs.append((x[k].numpy(), m, finding))
            if len(pairs) >= batch_size:
                flush()
    if pairs:
        flush()
    table = pd.DataFrame(rows, columns=["image_id", "finding", "T", "iou", "iobb", "correct", "false_positives"])
    if write:
        summ = summarize(table) if len(table) else pd.DataFrame()
        atomic.write_csv(run / "localization.csv", table)
        atomic.write_csv(run / "localization_summary.csv", summ)
        ref = cards.reproduction("chestxray8")["reference"]["localization"]
        md = (f"# Localization ({method}, {split} split, ChestX-ray8 protocol)\n\n"
              + (table_markdown(summ, findings, ref) if len(table) else "No boxed images.") + "\n")
        atomic.write_text(run / "localization.md", md)
    return table


def _ground_truth(records, summary, data_dir, split) -> pd.DataFrame:
    """Ground-truth boxes in original pixels for the split's images."""
    from pathlib import Path
    man = pd.read_csv(Path(records) / "manifest.csv", usecols=["image_id", "split"])
    keep = set(man.loc[man["split"] == split, "image_id"])
    if data_dir is None:
        boxes = pd.read_csv(Path(records) / "boxes.csv")
    else:
        from cxr_tf import sources
        src = sources.get(summary["config"]["dataset"]).load(data_dir, split=summary["config"]["split"])
        boxes = src.boxes.copy()
        sizes = summary["image_sizes"]
        boxes = boxes[boxes["image_id"].isin(sizes)]
        scale_w = boxes["image_id"].map(lambda i: sizes[i][0] / src.bbox_frame)
        scale_h = boxes["image_id"].map(lambda i: sizes[i][1] / src.bbox_frame)
        boxes = boxes.assign(x=boxes.x * scale_w, y=boxes.y * scale_h, w=boxes.w * scale_w, h=boxes.h * scale_h)
    return boxes[boxes["image_id"].isin(keep)].reset_index(drop=True)
