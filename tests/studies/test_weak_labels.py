"""The weak-labels study chain end to end on a small phantom DICOM release: de-identified DICOM
metadata, mined labels (and their agreement with the phantoms' truth), statistics, a patient-level
split of a study subset, one training per backbone, metrics, overlays of three methods, report."""

import copy

import pandas as pd

from cxr_tf.core import cards
from cxr_tf.studies.reproduce import reproduce
from cxr_tf.studies.weak_labels import weak_labels


def test_weak_labels_chain_on_phantoms(tmp_path):
    recipe = copy.deepcopy(cards.reproduction("weak-labels"))
    recipe["backbones"] = ["tiny"]
    recipe["demo"].update(images=70, patients=14, synth_size=48, bootstrap=20, explain_images=1)
    recipe["demo"]["prepare"] = {"size": 32}
    recipe["demo"]["train"].update(image_size=32, epochs=1, batch_size=8)
    recipe["prepare"]["options"]["limit_studies"] = 30
    res = weak_labels(recipe, tmp_path, demo=True)
    out = tmp_path
    meta = pd.read_csv(out / "dicom_metadata" / "metadata.csv")
    assert len(meta) > 0 and meta["deid_profile"].str.contains("PS3.15").all()
    labels = pd.read_csv(out / "labels.csv", dtype={"study_id": str})
    assert labels["labeler"].str.startswith("cxr-tf rule labeler").all()
    records = pd.read_csv(out / "records" / "manifest.csv", dtype=str)
    assert records["study"].nunique() <= 30 and records["label_source"].str.startswith("labels.csv").all()
    assert records.groupby("patient")["split"].nunique().max() == 1
    assert (out / "stats" / "stats.md").is_file() and (out / "runs" / "tiny" / "metrics.json").is_file()
    for method in ("gradcam", "lime", "ig"):
        assert list((out / "runs" / "tiny" / "explain" / method).glob("*.png")), method
    report = (out / "report.md").read_text()
    assert "Labeler agreement with the phantoms' true findings" in report and "| **all** | **" in report
    assert "| finding | tiny |" in report and "runs/tiny/explain/gradcam/" in report
    assert set(res["mean_auroc"]) == {"tiny"}


def test_dry_run_of_the_study_recipe():
    res = reproduce("weak-labels", "unused", dry_run=True)
    assert res["settings"]["dataset"] == "mimic" and res["settings"]["loss"] == "masked_bce"
