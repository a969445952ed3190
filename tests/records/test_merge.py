"""``cxr-tf merge``: records of several datasets -> one records directory on the crosswalk's union
label set, each record copied with its labels moved (blank where its dataset does not label a
finding), ids and patients prefixed by dataset, splits kept patient-disjoint; a tiny model trains
on it with the masked loss and is evaluated per dataset."""

import json

import numpy as np
import pandas as pd
import pytest

from cxr_tf import sources
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.records import tfrecord
from cxr_tf.records.merge import _floats, merge
from cxr_tf.records.prepare import prepare
from cxr_tf.records.reader import RecordsDir


def _third():
    """A third dataset with a label set of its own when one is registered (PadChest), else MIMIC."""
    return "padchest" if "padchest" in sources.names() else "mimic"


@pytest.fixture(scope="module")
def merged(records_dir, chexpert_records, tmp_path_factory):
    """NIH + CheXpert + a third dataset, prepared at 48 px, merged."""
    root = tmp_path_factory.mktemp("merge")
    third = _third()
    info = sources.synth_writer(third)(root / f"{third}_raw", n_images=60, n_patients=20, size=64, seed=2,
                                        workers=1)
    prepare(third, info.get("data_dir", root / f"{third}_raw"), root / f"{third}_rec", size=48, workers=1,
            images_per_shard=16)
    inputs = [records_dir, chexpert_records, root / f"{third}_rec"]
    return inputs, root / "merged", merge(inputs, root / "merged")


def test_union_label_set_through_the_crosswalk(merged):
    inputs, out, summary = merged
    recs = [RecordsDir(p) for p in inputs]
    union = summary["findings"]
    # NIH's Effusion and CheXpert's Pleural Effusion are one concept: one column, named as NIH has it
    assert "Effusion" in union and "Pleural Effusion" not in union
    assert summary["crosswalk"]["chexpert"]["Pleural Effusion"] == "Effusion"
    for rec in recs:                                       # every finding of every dataset is there
        assert set(summary["labelled_by"][rec.dataset]) <= set(union)
        assert len(summary["labelled_by"][rec.dataset]) == len(rec.findings)
    assert len(union) == len(set(union))


def test_rows_keep_their_dataset_and_labels(merged):
    inputs, out, summary = merged
    rec = RecordsDir(out)
    frame = rec.manifest
    assert summary["counts"]["per_dataset"] == {RecordsDir(p).dataset: len(RecordsDir(p).manifest) for p in inputs}
    assert len(frame) == sum(len(RecordsDir(p).manifest) for p in inputs)
    assert frame.groupby("patient")["split"].nunique().max() == 1
    nih = RecordsDir(inputs[0])
    part = frame[frame["dataset"] == "chestxray14"].set_index("image_id")
    original = nih.manifest.set_index("image_id")
    for image_id in original.index[:10]:
        row = part.loc[f"chestxray14/{image_id}"]
        for f in nih.findings:
            assert row[f] == original.loc[image_id, f]
        # a finding NIH never labels is blank, not negative
        assert np.isnan(row["Support Devices"]) and np.isnan(row["Lung Opacity"])
    cx = frame[frame["dataset"] == "chexpert"]
    assert cx["Effusion"].notna().any() and cx["Emphysema"].isna().all()


def test_records_agree_with_the_manifest(merged):
    _, out, _ = merged
    rec = RecordsDir(out)
    frame = rec.manifest.set_index("image_id")
    seen = 0
    for split in rec.splits:
        files, count = rec.shards(split)
        n = 0
        for path in files:
            for data in tfrecord.read_records(path):
                features = tfrecord.example_features(data)
                image_id = tfrecord.feature_bytes(features["image_id"])[0].decode()
                labels, expected = _floats(features["labels"]), frame.loc[image_id, rec.findings].to_numpy(np.float32)
                assert np.array_equal(np.isnan(labels), np.isnan(expected))
                assert np.array_equal(np.nan_to_num(labels), np.nan_to_num(expected))
                assert frame.loc[image_id, "split"] == split
                n += 1
        assert n == count
        seen += n
    assert seen == len(frame)


def test_boxes_follow_their_images(merged):
    inputs, out, _ = merged
    boxes = RecordsDir(out).boxes()
    nih = RecordsDir(inputs[0]).boxes()
    assert len(boxes[boxes["dataset"] == "chestxray14"]) == len(nih)
    assert set(boxes["image_id"]) <= set(RecordsDir(out).manifest["image_id"])
    assert set(boxes["finding"]) <= set(RecordsDir(out).findings)


def test_refuses_what_cannot_be_merged(records_dir, chexpert_records, tmp_path):
    with pytest.raises(CxrConfigError, match="at least two"):
        merge([records_dir], tmp_path / "m")
    with pytest.raises(CxrConfigError, match="given twice"):
        merge([records_dir, records_dir], tmp_path / "m")
    other = tmp_path / "other_size"
    summary = json.loads((chexpert_records / "summary.json").read_text())
    import shutil
    shutil.copytree(chexpert_records, other)
    summary["config"]["size"] = 96
    (other / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(CxrConfigError, match="different sizes"):
        merge([records_dir, other], tmp_path / "m")
    with pytest.raises(CxrDataError, match="summary.json"):
        merge([records_dir, tmp_path], tmp_path / "m")


def test_a_merged_directory_trains_with_the_masked_loss_and_evaluates_per_dataset(merged, tiny_config, tmp_path):
    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.training.train import train

    _, out, summary = merged
    cfg = tiny_config(out, tmp_path / "run", findings="records", blank="ignore", loss="masked_bce", epochs=1)
    train(cfg)
    metrics = evaluate(tmp_path / "run", split="val", n_boot=10, figures=False)
    assert metrics["findings"] == summary["findings"]
    by = metrics["by_dataset"]
    assert set(by) == set(RecordsDir(out).manifest.query("split == 'val'")["dataset"])
    table = pd.read_csv(tmp_path / "run" / "metrics_by_dataset_val.csv")
    # a finding a dataset does not label has no AUROC in that dataset's rows
    nih = table[table["dataset"] == "chestxray14"].set_index("finding")
    assert nih.loc["Support Devices", "n"] == 0 and np.isnan(nih.loc["Support Devices", "auroc"])
