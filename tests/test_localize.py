"""ChestX-ray8 localization scoring: IoU/IoBB on hand-built boxes, boxes from a thresholded
heatmap, correctness and false positives."""

import numpy as np
import pandas as pd
import pytest

from cxr_tf.localize import boxes_from_heatmap, iobb, iou, score_image, summarize, table_markdown


def test_iou_and_iobb_by_hand():
    gt = (0.0, 0.0, 10.0, 10.0)
    det = (5.0, 5.0, 10.0, 10.0)          # overlap 5x5 = 25
    assert iou(gt, det) == pytest.approx(25 / 175)
    assert iobb(gt, det) == pytest.approx(25 / 100)
    big = (-10.0, -10.0, 40.0, 40.0)       # contains gt: IoBB = 100 / 1600
    assert iobb(gt, big) == pytest.approx(100 / 1600) and iou(gt, big) == pytest.approx(100 / 1600)
    inside = (2.0, 2.0, 4.0, 4.0)          # inside gt: IoBB = 1
    assert iobb(gt, inside) == 1.0 and iou(gt, inside) == pytest.approx(16 / 100)
    assert iou(gt, (20.0, 20.0, 5.0, 5.0)) == 0.0


def test_boxes_from_thresholded_heatmap():
    heat = np.zeros((40, 60))
    heat[5:15, 10:30] = 1.0               # strong blob -> survives 60 and 180
    heat[25:35, 40:50] = 0.5              # medium blob (127/255) -> only the 60 threshold
    boxes = boxes_from_heatmap(heat)
    assert (10.0, 5.0, 20.0, 10.0) in boxes and (40.0, 25.0, 10.0, 10.0) in boxes
    assert len(boxes) == 2                 # the strong blob at both levels counts once
    assert boxes_from_heatmap(heat, levels=(180,)) == [(10.0, 5.0, 20.0, 10.0)]
    assert boxes_from_heatmap(np.zeros((5, 5))) == []
    diagonal = np.eye(6)                   # 8-connected: one region
    assert boxes_from_heatmap(diagonal, levels=(60,)) == [(0.0, 0.0, 6.0, 6.0)]


def test_score_image_correct_and_false_positives():
    gt = [(0.0, 0.0, 10.0, 10.0)]
    detected = [(0.0, 0.0, 20.0, 20.0), (50.0, 50.0, 5.0, 5.0)]   # IoBB 0.25 with gt; a stray box
    rows = {r["T"]: r for r in score_image(gt, detected)}
    assert rows[0.1]["correct"] and rows[0.1]["iobb"] == pytest.approx(0.25)
    assert not rows[0.25]["correct"]       # > T is strict, as in the paper
    assert rows[0.1]["false_positives"] == 1 and rows[0.5]["false_positives"] == 2


def test_summary_and_table():
    rows = pd.DataFrame([
        {"image_id": "a", "finding": "Mass", "T": 0.5, "iou": 0.4, "iobb": 0.8, "correct": True, "false_positives": 0},
        {"image_id": "b", "finding": "Mass", "T": 0.5, "iou": 0.1, "iobb": 0.2, "correct": False, "false_positives": 2},
    ])
    s = summarize(rows)
    assert s.loc[0, "accuracy"] == 0.5 and s.loc[0, "avg_false_positives"] == 1.0 and s.loc[0, "boxes"] == 2
    ref = {"findings": ["Mass"], "T": [0.5], "accuracy": [[0.1411]], "afp": [[0.6941]]}
    md = table_markdown(s, ["Mass"], ref)
    assert "| 0.5 | Acc | 0.50 (0.14) |" in md and "| 0.5 | AFP | 1.00 (0.69) |" in md
