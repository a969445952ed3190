"""ChestX-ray8 localization scoring: IoU/IoBB on hand-built boxes, boxes from a thresholded
heatmap, correctness and false positives."""

import numpy as np
import pandas as pd
import pytest

from cxr_tf.explain.localize import boxes_from_heatmap, iobb, iou, score_image, summarize, table_markdown


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


def test_grid_cam_is_the_box_mask_pooled_to_the_feature_grid():
    from cxr_tf.explain.localize import grid_cam
    heat = grid_cam([(0.0, 0.0, 32.0, 32.0)], image_size=128, grid=4)   # exactly cell (0, 0)
    assert heat.shape == (128, 128)
    assert heat[:16, :16].min() == pytest.approx(1.0)                 # clamped corner plateau
    assert heat[80:, 80:].max() == 0.0
    # bilinear with half-pixel centres, as tf.image.resize: halfway between cell centres 16 and 48
    assert heat[10, 31] == pytest.approx(0.5 + 1 / 64, abs=1e-6)
    assert heat[10, 32] == pytest.approx(0.5 - 1 / 64, abs=1e-6)
    half = grid_cam([(0.0, 0.0, 16.0, 32.0)], image_size=128, grid=4)  # half of cell (0, 0)
    assert half.max() == pytest.approx(0.5)


def test_ceiling_grows_with_the_feature_grid():
    """An oracle CAM of a small box cannot give IoBB > 0.5 on a coarse grid, and does on a fine one:
    the resolution ceiling that caps CAM localization of small lesions."""
    from cxr_tf.explain.localize import grid_cam
    nodule = (70.0, 40.0, 8.0, 8.0)
    coarse = score_image([nodule], boxes_from_heatmap(grid_cam([nodule], 128, 4)))
    fine = score_image([nodule], boxes_from_heatmap(grid_cam([nodule], 128, 32)))
    at = lambda rows, t: next(r for r in rows if r["T"] == t)   # noqa: E731
    assert not at(coarse, 0.5)["correct"] and at(coarse, 0.5)["iobb"] < 0.25
    assert at(fine, 0.5)["correct"] and at(fine, 0.5)["iobb"] > 0.5


def test_pointing_game_with_tolerance():
    from cxr_tf.explain.localize import peak_hits
    heat = np.zeros((50, 50))
    heat[20, 30] = 1.0                      # peak centre at (30.5, 20.5)
    assert peak_hits(heat, [(25.0, 15.0, 10.0, 10.0)], tolerance=0)
    assert not peak_hits(heat, [(0.0, 0.0, 10.0, 10.0)], tolerance=0)
    assert peak_hits(heat, [(35.0, 15.0, 5.0, 5.0)], tolerance=5)   # 4.5 px left of the box
    assert not peak_hits(np.zeros((5, 5)), [(0.0, 0.0, 5.0, 5.0)], tolerance=0)


def test_summary_carries_diagnostics_and_their_table():
    from cxr_tf.explain.localize import diagnostics_markdown
    rows = pd.DataFrame([
        {"image_id": "a", "finding": "Nodule", "T": t, "iou": 0.0, "iobb": 0.0, "correct": t < 0.5,
         "false_positives": 1, "peak_in_box": True, "ceiling_correct": t < 0.75} for t in (0.1, 0.5, 0.9)])
    s = summarize(rows)
    assert list(s["pointing"]) == [1.0, 1.0, 1.0] and list(s["ceiling_accuracy"]) == [1.0, 1.0, 0.0]
    md = diagnostics_markdown(s, ["Nodule"], grid=4)
    assert "| Nodule | 1 | 1.00 | 1.00 / 1.00 | 0.00 / 1.00 | 0.00 / 0.00 |" in md and "4x4" in md


def test_oracle_ceiling_on_a_box_list():
    from cxr_tf.explain.localize import oracle_ceiling
    boxes = pd.DataFrame([
        {"image_id": "a.png", "finding": "Cardiomegaly", "x": 300.0, "y": 400.0, "w": 420.0, "h": 300.0},
        {"image_id": "b.png", "finding": "Nodule", "x": 600.0, "y": 300.0, "w": 50.0, "h": 50.0}])
    coarse = summarize(oracle_ceiling(boxes, grid=4, image_size=128)).set_index(["T", "finding"])
    fine = summarize(oracle_ceiling(boxes, grid=32, image_size=1024)).set_index(["T", "finding"])
    assert coarse.loc[(0.5, "Cardiomegaly"), "accuracy"] == 1.0 and coarse.loc[(0.5, "Nodule"), "accuracy"] == 0.0
    assert fine.loc[(0.5, "Nodule"), "accuracy"] == 1.0 and fine.loc[(0.9, "Cardiomegaly"), "accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['w', 'h'\]"):
        oracle_ceiling(boxes.drop(columns=["w", "h"]), grid=4, image_size=128)


def test_localize_run_end_to_end(tiny_run):
    """A trained tiny run: every boxed test image scored at every T, with the diagnostics, the
    three files written, and the ceiling of the model's own feature grid."""
    from cxr_tf.explain.localize import localize_run
    table = localize_run(tiny_run, "cam").fixed
    import json
    records = json.loads((tiny_run / "config.json").read_text())["records"]
    gt = pd.read_csv(f"{records}/boxes.csv")
    gt = gt[gt["split"] == "test"]
    assert len(gt) > 0 and len(table) == 5 * len(gt)
    assert set(table["image_id"]) == set(gt["image_id"])
    assert {"peak_in_box", "ceiling_correct"} <= set(table.columns)
    assert table["iobb"].between(0, 1).all() and table["iou"].between(0, 1).all()
    summary = pd.read_csv(tiny_run / "localization_summary.csv")
    assert {"accuracy", "avg_false_positives", "pointing", "ceiling_accuracy"} <= set(summary.columns)
    # accuracy can only fall as T rises, for the model and for the oracle
    for col in ("accuracy", "ceiling_accuracy"):
        assert (summary.sort_values("T").groupby("finding")[col].apply(lambda s: s.is_monotonic_decreasing)).all()
    md = (tiny_run / "localization.md").read_text()
    assert "| T(IoBB) | metric |" in md and "### Diagnostics" in md and "feature grid" in md


def test_localize_run_tunes_chexlocalize_thresholds_on_held_apart_patients(tiny_run):
    """NIH-style records keep every box in the test split, so thresholds are tuned on one
    patient-disjoint half of the boxed test images and scored on the other; the thresholds are
    stored with the run and the table carries CIs and ceilings."""
    import json
    from cxr_tf.explain import chexlocalize
    from cxr_tf.explain.localize import localize_run
    res = localize_run(tiny_run, "gradcam-fine", n_boot=20)
    assert res.method == "gradcam-fine" and res.seconds_per_map > 0 and "half of the test split" in res.tuned_on
    stored = json.loads((tiny_run / "localization_thresholds.json").read_text())
    assert stored["method"] == "gradcam-fine" and stored["thresholds"] == res.thresholds
    assert set(res.thresholds.values()) <= set(chexlocalize.GRID)
    assert res.pairs["iou"].between(0, 1).all() and set(res.pairs["finding"]) <= set(res.thresholds)
    table = pd.read_csv(tiny_run / "localization_chexlocalize.csv")
    assert table["finding"].iloc[-1] == "mean"
    assert {"miou", "miou_low", "miou_high", "miou_ceiling", "hit_rate", "hit_rate_ceiling", "acc",
            "acc_ceiling"} <= set(table.columns)
    assert (table["miou_ceiling"] > 0).all()
    md = (tiny_run / "localization.md").read_text()
    assert "## CheXlocalize protocol" in md and "mIoU [95% CI] / ceiling" in md


@pytest.mark.parametrize("name", ["rsna_pneumonia", "siim_acr", "vindr_cxr"])
def test_localize_scores_the_boxes_of_other_datasets(name, tiny_run, tmp_path):
    """Any records with boxes are scored: RSNA's pneumonia boxes, the boxes of SIIM's masks and
    VinDr's per-reader boxes, here with the NIH-trained run on the findings it shares by name."""
    from cxr_tf import sources
    from cxr_tf.core import cards
    from cxr_tf.explain.localize import localize_run
    from cxr_tf.records.prepare import prepare
    from cxr_tf.records.reader import RecordsDir

    if name not in sources.names():
        pytest.skip(f"{name} is not registered")
    info = sources.synth_writer(name)(tmp_path / "raw", **cards.dataset_card(name)["synth"]["contract"])
    prepare(name, info.get("data_dir", tmp_path / "raw"), tmp_path / "rec", size=48, workers=1)
    rec = RecordsDir(tmp_path / "rec")
    boxes = rec.boxes("train")
    from cxr_tf.models.rundir import RunDir
    shared = boxes[boxes["finding"].isin(RunDir(tiny_run).config["findings"])]
    assert len(shared), f"{name}: the phantom has no boxes the NIH run can be scored on"
    table = localize_run(tiny_run, records=tmp_path / "rec", split="train", write=False, n_boot=10).fixed
    assert set(table["image_id"]) == set(shared["image_id"])
    assert table["iobb"].between(0, 1).all() and table["iou"].between(0, 1).all()
