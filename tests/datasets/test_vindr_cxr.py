"""VinDr-CXR: the real Kaggle train.csv read with the images absent (exact counts, per-reader boxes,
the reader rules), and phantom PhysioNet and Kaggle releases in the real layouts: layout detection,
readers who disagree, the published test consensus, boxes in DICOM pixels, splits, and clear
errors on bad input."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.datasets.vindr_cxr import phantom
from cxr_tf.datasets.vindr_cxr import source as vindr
from cxr_tf.sources import manifest

CARD = cards.dataset_card("vindr_cxr")
FINDINGS = CARD["findings"]
KAGGLE = CARD["findings_kaggle"]
UNLABELLED = [f for f in FINDINGS if f not in KAGGLE]
LAYOUT = CARD["layout"]
# Rows per class of the real train.csv (one per reader's box; "No finding" has none).
CLASS_ROWS = {"Aortic enlargement": 7162, "Atelectasis": 279, "Calcification": 960, "Cardiomegaly": 5427,
              "Consolidation": 556, "ILD": 1000, "Infiltration": 1247, "Lung Opacity": 2483, "Nodule/Mass": 2580,
              "Other lesion": 2203, "Pleural effusion": 2476, "Pleural thickening": 4842, "Pneumothorax": 226,
              "Pulmonary fibrosis": 4655}


def _csv(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ------------------------------------------------------------------------------ the real train.csv
@pytest.fixture(scope="module")
def real_dir(shared_dir, tmp_path_factory):
    """A Kaggle folder holding only the real label file, under the release's own name (gzipped)."""
    folder = tmp_path_factory.mktemp("vindr_real")
    (folder / "train.csv.gz").symlink_to(shared_dir / "labels" / "vinbigdata-train.csv.gz")
    return folder


@pytest.fixture(scope="module")
def real(real_dir):
    return vindr.load(real_dir)


def test_real_train_csv_counts(real, shared_dir):
    with gzip.open(shared_dir / "labels" / "vinbigdata-train.csv.gz", "rt") as fh:
        assert fh.readline().strip() == ",".join(LAYOUT["kaggle_columns"])
    m = real.manifest
    assert len(m) == 15000 and m["image_id"].is_unique and (m["patient"] == m["image_id"]).all()
    assert len(real.missing) == 15000                                    # images absent: listed, not an error
    assert real.files["layout"] == "Kaggle VinBigData"
    counts = real.release_counts
    assert counts["kaggle_rows"] == 67914 and counts["kaggle_boxes"] == 36096
    assert counts["kaggle_no_finding_rows"] == 31818 and counts["kaggle_normal_images"] == 10606
    assert counts["readers"] == 17 and counts["readers_per_image"] == 3 and counts["reader_label_rows"] == 45000
    assert counts["train_images"] == 15000 and counts["degenerate_boxes"] == 0
    assert {k: v for k, v in CARD["expected"].items() if k in counts} == \
        {k: counts[k] for k in CARD["expected"] if k in counts}
    assert m["readers"].str.split(";").map(len).eq(3).all()
    assert set(";".join(m["readers"]).split(";")) == {f"R{i}" for i in range(1, 18)}


def test_real_boxes_are_per_reader_in_dicom_pixels(real):
    boxes = real.boxes
    assert real.bbox_frame is None and len(boxes) == 36096 and boxes["image_id"].nunique() == 4394
    assert boxes.groupby("finding").size().to_dict() == CLASS_ROWS
    assert set(boxes["rad_id"]) <= {f"R{i}" for i in range(1, 18)} and (boxes[["w", "h"]] > 0).all().all()
    row = boxes[(boxes["image_id"] == "9a5094b2563a1ef3ff50dc5c7ff71345") & (boxes["finding"] == "Cardiomegaly")
                & (boxes["rad_id"] == "R10")]
    assert row[["x", "y", "w", "h"]].to_numpy().tolist() == [[691.0, 1375.0, 962.0, 456.0]]   # line 4 of train.csv


def test_real_labels_under_each_reader_rule(real, real_dir):
    m = real.manifest
    assert m[UNLABELLED].isna().all().all()                           # the Kaggle layout labels 15 of 28
    assert set(np.unique(m[KAGGLE].to_numpy())) == {0.0, 1.0}
    assert set(m["label_method"]) == {"majority of 3 readers"}
    majority = m[KAGGLE].sum().astype(int).to_dict()
    assert majority["Cardiomegaly"] == 1817 and majority["Aortic enlargement"] == 2346
    assert majority["Pneumothorax"] == 58 and majority["No finding"] == 10606
    assert (m[KAGGLE].sum(axis=1) == 0).sum() == 42                    # readers disagreed on everything
    anyone = vindr.load(real_dir, readers="any").manifest
    assert anyone["Cardiomegaly"].sum() == 2300 and anyone["Pneumothorax"].sum() == 96
    assert anyone["No finding"].sum() == 10606 and not (anyone[KAGGLE].sum(axis=1) == 0).any()
    assert (anyone[KAGGLE].to_numpy() >= m[KAGGLE].to_numpy()).all()
    readers = real.tables["reader_labels"]
    assert len(readers) == 45000 and readers.groupby("image_id")["rad_id"].nunique().eq(3).all()


def test_real_official_split_carves_val_by_image(real):
    m = real.manifest
    assert m["split"].value_counts().to_dict() == {"train": 13500, "val": 1500}   # Kaggle: no test
    manifest.validate(m, real.findings)


def test_stats_reports_the_real_counts(real_dir, tmp_path):
    from cxr_tf.studies.stats import from_source, tables

    frame, findings, _, facts = from_source("vindr_cxr", real_dir)
    counts = tables(frame, findings)["counts"].set_index("split")
    assert counts.loc["all", "images"] == 15000 and counts.loc["all", "images_on_disk"] == 0
    assert counts.loc["all", "patients"] == 15000 and facts["excluded_by_filter"] == {}


# ------------------------------------------------------------------------------------- phantoms
@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """The same phantom plan written in both layouts."""
    root = tmp_path_factory.mktemp("phantom_vindr")
    kw = dict(n_images=40, size=64, seed=7, workers=1)
    info = {layout: phantom.write_dataset(root / layout, layout=layout, **kw) for layout in phantom.LAYOUTS}
    return {"physionet": root / "physionet", "kaggle": root / "kaggle", "info": info}


def test_phantom_files_in_the_real_layouts(trees, shared_dir):
    kaggle, physio = trees["kaggle"], trees["physionet"]
    with gzip.open(shared_dir / "labels" / "vinbigdata-train.csv.gz", "rt") as fh:
        assert (kaggle / "train.csv").read_text().splitlines()[0] == fh.readline().strip()
    assert (kaggle / "sample_submission.csv").is_file() and any((kaggle / "test").glob("*.dicom"))
    ann = physio / LAYOUT["annotations_dir"]
    train, test = _csv(ann / "image_labels_train.csv"), _csv(ann / "image_labels_test.csv")
    assert list(train.columns) == ["image_id", "rad_id", *FINDINGS]
    assert "Other disease" in test.columns and "Other diseases" not in test.columns and "rad_id" not in test
    for name in ("annotations_train.csv", "annotations_test.csv"):
        assert list(_csv(ann / name).columns) == LAYOUT["annotation_columns"]
    for _, row in train.iterrows():
        assert (physio / vindr.image_path("train", row["image_id"])).is_file()


def test_layouts_are_detected_and_agree(trees):
    p, k = vindr.load(trees["physionet"]), vindr.load(trees["kaggle"])
    assert p.files["layout"] == "PhysioNet vindr-cxr" and k.files["layout"] == "Kaggle VinBigData"
    assert p.missing == [] and k.missing == []
    train = p.manifest[p.manifest["release_part"] == "train"].set_index("image_id").sort_index()
    kag = k.manifest.set_index("image_id").sort_index()
    assert list(train.index) == list(kag.index)
    pd.testing.assert_frame_equal(train[KAGGLE], kag[KAGGLE])          # same readers, same marks
    assert kag[UNLABELLED].isna().all().all() and not train[UNLABELLED].isna().any().any()
    assert train[["Pneumonia", "Tuberculosis"]].to_numpy().sum() > 0   # diagnoses from the readers
    with pytest.raises(CxrDataError, match="train.csv"):
        vindr.load(trees["physionet"], layout="kaggle")
    with pytest.raises(CxrConfigError, match="layout"):
        vindr.load(trees["physionet"], layout="dropbox")


def test_readers_partly_disagree_and_the_rules_follow_their_votes(trees):
    data = vindr.load(trees["physionet"], readers="uncertain")
    readers = data.tables["reader_labels"]
    assert readers.groupby("image_id")["rad_id"].nunique().eq(3).all()
    votes = readers.groupby("image_id")[FINDINGS].sum()
    assert ((votes > 0) & (votes < 3)).to_numpy().any()               # some disagreement
    m = data.manifest.set_index("image_id")
    train = m[m["release_part"] == "train"]
    v = votes.loc[train.index]
    np.testing.assert_array_equal(train[FINDINGS].to_numpy(), np.where(v >= 2, 1.0, np.where(v == 1, -1.0, 0.0)))
    majority = vindr.load(trees["physionet"]).manifest.set_index("image_id").loc[train.index]
    np.testing.assert_array_equal(majority[FINDINGS].to_numpy(), (v >= 2).astype(float))
    anyone = vindr.load(trees["physionet"], readers="any").manifest.set_index("image_id").loc[train.index]
    local = [f for f in FINDINGS if f != "No finding"]
    np.testing.assert_array_equal(anyone[local].to_numpy(), (v[local] >= 1).astype(float))
    np.testing.assert_array_equal(anyone["No finding"].to_numpy(), (v["No finding"] == 3).astype(float))
    assert set(train["label_method"]) == {"majority of 3 readers, one of 3 uncertain"}
    with pytest.raises(CxrConfigError, match="readers"):
        vindr.load(trees["physionet"], readers="loudest")


def test_test_images_keep_the_published_consensus(trees):
    consensus = _csv(trees["physionet"] / "annotations" / "image_labels_test.csv").set_index("image_id")
    for rule in ("any", "majority", "uncertain"):
        m = vindr.load(trees["physionet"], readers=rule).manifest.set_index("image_id")
        test = m[m["release_part"] == "test"]
        assert set(test["split"]) == {"test"} and set(test["readers"]) == {"consensus"}
        assert set(test["label_method"]) == {"consensus of 5 radiologists"}
        want = consensus.loc[test.index].rename(columns={"Other disease": "Other diseases"})[FINDINGS].astype(float)
        np.testing.assert_array_equal(test[FINDINGS].to_numpy(), want.to_numpy())


def test_boxes_are_per_reader_inside_the_dicom(trees):
    import pydicom

    data = vindr.load(trees["physionet"])
    boxes = data.boxes
    assert data.bbox_frame is None and {"rad_id", *vindr.BOX_COLUMNS} <= set(boxes.columns)
    assert set(boxes["finding"]) <= set(CARD["findings_local"])
    assert boxes.groupby(["image_id", "finding"])["rad_id"].nunique().max() > 1     # readers' own boxes
    paths = data.manifest.set_index("image_id")["path"]
    for image_id, part in boxes.groupby("image_id"):
        ds = pydicom.dcmread(trees["physionet"] / paths[image_id], stop_before_pixels=True)
        assert (part["x"] >= 0).all() and (part["x"] + part["w"] <= ds.Columns).all()
        assert (part["y"] >= 0).all() and (part["y"] + part["h"] <= ds.Rows).all()
    ann = _csv(trees["physionet"] / "annotations" / "annotations_train.csv")
    assert len(boxes) == (ann["x_min"] != "").sum() + data.release_counts["annotations_test_boxes"]


def test_splits(trees):
    p = vindr.load(trees["physionet"], val_fraction=0.25).manifest
    assert (p.loc[p["release_part"] == "test", "split"] == "test").all()
    train = p[p["release_part"] == "train"]
    assert (train["split"] == "val").sum() == round(0.25 * len(train)) and set(train["split"]) == {"train", "val"}
    k = vindr.load(trees["kaggle"]).manifest
    assert set(k["split"]) == {"train", "val"}
    r = vindr.load(trees["kaggle"], split="random", seed=3).manifest
    assert set(r["split"]) == {"train", "val", "test"}
    manifest.assert_patient_disjoint(r)
    assert vindr.load(trees["kaggle"], split="random", seed=3).manifest.equals(r)


def test_phantom_refuses_patients_other_than_images(tmp_path):
    with pytest.raises(CxrConfigError, match="one image per patient"):
        phantom.write_dataset(tmp_path, n_images=10, n_patients=3)
    with pytest.raises(CxrConfigError, match="layout"):
        phantom.write_dataset(tmp_path, n_images=10, layout="zip")


# ----------------------------------------------------------------------------------- bad input
def _copy_kaggle(trees, tmp_path):
    folder = tmp_path / "kaggle"
    folder.mkdir()
    shutil.copy(trees["kaggle"] / "train.csv", folder / "train.csv")
    return folder, _csv(folder / "train.csv")


def test_kaggle_bad_input_is_a_clear_error(trees, tmp_path):
    folder, table = _copy_kaggle(trees, tmp_path)
    with pytest.raises(CxrDataError, match="neither annotations/image_labels_train.csv"):
        vindr.load(tmp_path)
    table.drop(columns="rad_id").to_csv(folder / "train.csv", index=False)
    with pytest.raises(CxrDataError, match=r"train.csv.*missing column\(s\) \['rad_id'\]"):
        vindr.load(folder)
    bad = table.copy()
    bad.loc[3, "class_name"] = "Hernia"
    bad.to_csv(folder / "train.csv", index=False)
    with pytest.raises(CxrDataError, match="line 5: unknown class_name 'Hernia'"):
        vindr.load(folder)
    bad = table.copy()
    bad.loc[2, "class_id"] = "99"
    bad.to_csv(folder / "train.csv", index=False)
    with pytest.raises(CxrDataError, match="line 4: class_id '99'"):
        vindr.load(folder)
    bad = table.copy()
    row = int(np.flatnonzero(bad["x_min"] != "")[0])
    bad.loc[row, "y_max"] = ""
    bad.to_csv(folder / "train.csv", index=False)
    with pytest.raises(CxrDataError, match=f"line {row + 2}: box .* incomplete"):
        vindr.load(folder)
    bad.loc[row, "y_max"] = "wide"
    bad.to_csv(folder / "train.csv", index=False)
    with pytest.raises(CxrDataError, match=f"line {row + 2}: non-numeric box"):
        vindr.load(folder)


def test_degenerate_boxes_are_counted_not_silently_dropped(trees, tmp_path):
    folder, table = _copy_kaggle(trees, tmp_path)
    row = int(np.flatnonzero(table["x_min"] != "")[0])
    table.loc[row, "x_max"] = table.loc[row, "x_min"]
    table.to_csv(folder / "train.csv", index=False)
    data = vindr.load(folder)
    assert data.release_counts["degenerate_boxes"] == 1
    assert len(data.boxes) == (table["x_min"] != "").sum() - 1


def test_physionet_bad_input_is_a_clear_error(trees, tmp_path):
    folder = tmp_path / "physionet"
    shutil.copytree(trees["physionet"] / "annotations", folder / "annotations")
    labels = folder / "annotations" / "image_labels_train.csv"
    table = _csv(labels)
    table.rename(columns={"rad_id": "rad_ID"}).to_csv(labels, index=False)        # some copies spell it so
    assert len(vindr.load(folder).manifest) == 40
    bad = table.copy()
    bad.loc[5, "Edema"] = "yes"
    bad.to_csv(labels, index=False)
    with pytest.raises(CxrDataError, match="image_labels_train.csv.*line 7: Edema is 'yes'"):
        vindr.load(folder)
    table.drop(columns="Rib fracture").to_csv(labels, index=False)
    with pytest.raises(CxrDataError, match=r"missing label column\(s\) \['Rib fracture'\]"):
        vindr.load(folder)
    pd.concat([table, table.iloc[:1]]).to_csv(labels, index=False)
    with pytest.raises(CxrDataError, match=f"line {len(table) + 2}: a second row"):
        vindr.load(folder)
    table.to_csv(labels, index=False)
    boxes = folder / "annotations" / "annotations_train.csv"
    ann = _csv(boxes)
    ann.loc[0, "image_id"] = "f" * 32
    ann.to_csv(boxes, index=False)
    with pytest.raises(CxrDataError, match="1 boxed image"):
        vindr.load(folder)
    ann.loc[0, "image_id"] = "not-an-id"
    ann.to_csv(boxes, index=False)
    with pytest.raises(CxrDataError, match="line 2: image_id 'not-an-id'"):
        vindr.load(folder)


def test_physionet_test_files_are_optional_parts(trees, tmp_path):
    folder = tmp_path / "physionet"
    shutil.copytree(trees["physionet"] / "annotations", folder / "annotations")
    boxes = folder / "annotations" / "annotations_test.csv"
    _csv(boxes).drop(columns="rad_id").to_csv(boxes, index=False)       # the consensus may name no reader
    data = vindr.load(folder)
    test = data.boxes[data.boxes["image_id"].isin(data.manifest.loc[data.manifest["split"] == "test", "image_id"])]
    assert len(test) == data.release_counts["annotations_test_boxes"] > 0 and set(test["rad_id"]) == {""}
    (folder / "annotations" / "image_labels_test.csv").unlink()
    boxes.unlink()
    train_only = vindr.load(folder)
    assert set(train_only.manifest["release_part"]) == {"train"} and "test" not in set(train_only.manifest["split"])
    assert "labels_test" not in train_only.files and "test_images" not in train_only.release_counts
