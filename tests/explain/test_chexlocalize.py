"""CheXlocalize's protocol by hand: masks, IoU, hit, per-finding tuning, patient-disjoint tuning
halves, bootstrap CIs and the summary table."""

import numpy as np
import pandas as pd
import pytest

from cxr_tf.explain import chexlocalize as cl


def test_rasterize_and_mask_iou_by_hand():
    m = cl.rasterize([(2, 1, 3, 2)], (6, 8))
    assert m.sum() == 6 and m[1:3, 2:5].all() and not m[0].any()
    assert cl.rasterize([(-5, -5, 7, 7)], (4, 4)).sum() == 4          # clipped to the image
    a, b = cl.rasterize([(0, 0, 4, 4)], (8, 8)), cl.rasterize([(2, 0, 4, 4)], (8, 8))
    assert cl.mask_iou(a, b) == pytest.approx(8 / 24)
    assert cl.mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 0.0


def test_hit_is_the_peak_inside_the_truth():
    truth = cl.rasterize([(4, 4, 2, 2)], (10, 10))
    heat = np.zeros((10, 10))
    heat[5, 5] = 1.0
    assert cl.hit(heat, truth)
    heat[0, 0] = 2.0
    assert not cl.hit(heat, truth)
    assert not cl.hit(np.ones((10, 10)), truth)                          # a flat map points nowhere


def test_pair_scores_peak_where_the_threshold_fits_the_box():
    """A heatmap that is a soft blob over a 20 x 20 box: IoU rises then falls with the threshold,
    and box accuracy at T(IoBB)=0.5 is right wherever the drawn box lies mostly inside."""
    yy, xx = np.mgrid[:64, :64]
    heat = np.exp(-(((xx - 30) / 10.0) ** 2 + ((yy - 30) / 10.0) ** 2))
    box = (20, 20, 20, 20)
    s = cl.pair_scores(heat, cl.rasterize([box], (64, 64)), [box])
    ious = np.array(s["iou"])
    best = int(np.argmax(ious))
    assert 0 < best < len(cl.GRID) - 1 and ious[best] > 0.8 and s["hit"]
    assert s["correct"][best] == [True] and s["correct"][0] == [False]   # t = 0.05 draws a box far too big


def _pairs():
    """Two findings, six patients; IoU at each threshold rises to a finding-specific best."""
    rows = []
    for p in range(6):
        for f, best in (("Mass", 3), ("Nodule", 10)):
            iou = [1.0 - abs(k - best) / 20 for k in range(len(cl.GRID))]
            rows.append({"image_id": f"{p}.png", "finding": f, "split": "test", "patient": str(p), "hit": p % 2 == 0,
                         "iou": iou, "correct": [[k == best] for k in range(len(cl.GRID))],
                         "oracle_hit": True, "oracle_iou": [1.0] * len(cl.GRID),
                         "oracle_correct": [[True]] * len(cl.GRID)})
    return pd.DataFrame(rows)


def test_tuning_halves_are_patient_disjoint_and_thresholds_per_finding():
    pairs = _pairs()
    pairs["part"] = cl.tuning_parts(pairs, val_has_truth=False)
    parts = pairs.groupby("patient")["part"].nunique()
    assert (parts == 1).all() and set(pairs["part"]) == {"tune", "score"}
    t = cl.tune(pairs)
    assert t == {"Mass": cl.GRID[3], "Nodule": cl.GRID[10]}
    val = pairs.assign(split=["val"] * 4 + ["test"] * 8)
    assert list(cl.tuning_parts(val, val_has_truth=True)) == ["tune"] * 4 + ["score"] * 8


def test_summary_has_cis_and_ceilings():
    pairs = _pairs()
    pairs["part"] = "score"
    thresholds = {"Mass": cl.GRID[3], "Nodule": cl.GRID[10]}
    scored = cl.at_threshold(pairs, thresholds)
    oracle = cl.at_threshold(pairs, thresholds, prefix="oracle_")
    assert len(scored) == 12 and scored["iou"].eq(1.0).all() and scored["correct_boxes"].eq(1).all()
    table = cl.summarize(scored, oracle, n_boot=50)
    mass = table.set_index("finding").loc["Mass"]
    assert mass["miou"] == 1.0 and mass["hit_rate"] == pytest.approx(0.5) and mass["acc"] == 1.0
    assert mass["hit_rate_low"] <= 0.5 <= mass["hit_rate_high"] and mass["hit_rate_high"] > mass["hit_rate_low"]
    assert mass["miou_ceiling"] == 1.0 and table["finding"].iloc[-1] == "mean"
    md = cl.markdown(table, "half of the test split")
    assert "| Mass | 6 | 0.20 | 1.00" in md and "ceiling" in md


def test_bootstrap_resamples_images_not_rows():
    frame = pd.DataFrame({"image_id": ["a", "a", "b"], "hit": [True, True, False]})
    value, low, high = cl.bootstrap(frame, lambda f: f["hit"].mean(), n_boot=200, seed=1)
    assert value == pytest.approx(2 / 3) and low == 0.0 and high == 1.0
    assert np.isnan(cl.bootstrap(frame.iloc[:1], lambda f: f["hit"].mean())[1])
