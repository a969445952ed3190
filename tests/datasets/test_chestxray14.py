"""The ChestX-ray14 source reads the real files: both Data_Entry headers, the lists, the box list
and both image folder layouts; bad input fails naming the file."""

import numpy as np
import pytest

from cxr_tf.core.errors import CxrDataError, LeakageError
from cxr_tf.datasets.chestxray14 import source as src

def test_v2020_layout(make_layout, tmp_path):
    d = src.load(make_layout(tmp_path / "nih"))
    m = d.manifest
    assert list(m.columns[:7]) == ["path", "image_id", "patient", "study", "view", "age", "sex"]
    assert m.columns[-1] != "split" and "split" in m.columns
    row = m.set_index("image_id").loc["00000001_001.png"]
    assert row["Cardiomegaly"] == 1 and row["Emphysema"] == 1 and row["Effusion"] == 0
    assert row["patient"] == "1" and row["age"] == 58 and row["sex"] == "M" and row["view"] == "PA"
    assert m.set_index("image_id").loc["00000002_000.png", list(d.findings)].sum() == 0
    assert m.set_index("image_id").loc["00000003_000.png", "Pleural_Thickening"] == 1
    assert set(m["path"]) >= {"images_001/images/00000001_000.png", "images_002/images/00000001_001.png"}
    assert d.missing == []
    assert m.set_index("image_id").loc["00000004_000.png", "split"] == "test"


def test_2017_header_with_trailing_commas_and_patient_sex(make_layout, tmp_path):
    header = make_layout.HEADER.replace("Patient Gender", "Patient Sex")
    d = src.load(make_layout(tmp_path / "nih", header=header, trailing=",",
                             name="Data_Entry_2017.csv", folders=("images",)))
    assert len(d.manifest) == 5 and not any(c.startswith("Unnamed") for c in d.manifest.columns)
    assert set(d.manifest["sex"]) == {"M", "F"}
    assert d.manifest["path"].str.startswith("images/").all()


def test_boxes_map_infiltrate_and_keep_coordinates(make_layout, tmp_path):
    boxes = ("00000004_000.png,Mass,100.5,200.25,300,150", "00000004_000.png,Infiltrate,1,2,3,4")
    d = src.load(make_layout(tmp_path / "nih", boxes=boxes))
    assert list(d.boxes["finding"]) == ["Mass", "Infiltration"]
    assert tuple(d.boxes.iloc[0][["x", "y", "w", "h"]]) == (100.5, 200.25, 300.0, 150.0)
    assert d.bbox_frame == 1024


def test_missing_images_are_listed_not_dropped(make_layout, tmp_path):
    root = make_layout(tmp_path / "nih")
    next(root.glob("images_*/images/00000002_000.png")).unlink()
    d = src.load(root)
    assert d.missing == ["00000002_000.png"] and len(d.manifest) == 5


def test_unknown_label_names_file_and_line(make_layout, tmp_path):
    rows = make_layout.ROWS[:2] + ["00000002_000.png,Pneumonitis,0,2,80,M,AP,2500,2048,0.171,0.171"]
    with pytest.raises(CxrDataError) as err:
        src.load(make_layout(tmp_path / "nih", rows=rows, test=()))
    msg = str(err.value)
    assert "Data_Entry_2017_v2020.csv" in msg and "line 4" in msg and "Pneumonitis" in msg


def test_missing_column_names_file(make_layout, tmp_path):
    header = make_layout.HEADER.replace("Patient ID", "Patient")
    with pytest.raises(CxrDataError, match="missing column.*Patient ID"):
        src.load(make_layout(tmp_path / "nih", header=header))


def test_ragged_row_is_an_error(make_layout, tmp_path):
    rows = make_layout.ROWS[:-1] + ["00000004_000.png,Mass,0,4,33"]
    with pytest.raises(CxrDataError, match="line 6 has 5 fields"):
        src.load(make_layout(tmp_path / "nih", rows=rows))


def test_official_lists_sharing_a_patient_is_leakage(make_layout, tmp_path):
    with pytest.raises(LeakageError, match="share patients"):
        src.load(make_layout(tmp_path / "nih", test=("00000001_001.png",)))


def test_random_split_is_patient_level(make_layout, tmp_path):
    d = src.load(make_layout(tmp_path / "nih"), split="random", seed=1)
    assert d.manifest.groupby("patient")["split"].nunique().max() == 1


def test_real_nih_files(shared_dir):
    d = src.load(shared_dir / "nih")
    m = d.manifest
    assert len(m) == 112120 and m["patient"].nunique() == 30805
    assert len(d.boxes) == 984 and d.boxes["image_id"].nunique() == 880
    assert "Infiltrate" not in set(d.boxes["finding"])
    assert len(d.missing) == 112120 - 12
    assert (m["split"] == "test").sum() == 25596
    assert set(d.boxes["image_id"]) <= set(m.loc[m["split"] == "test", "image_id"])
    row = m.set_index("image_id").loc["00029539_000.png"]
    assert row[["Cardiomegaly", "Effusion", "Pleural_Thickening"]].tolist() == [1, 1, 1]
    assert row[list(d.findings)].sum() == 3


# ---- Google's expert relabels as the test split's labels (--option test_labels=google2019)

GOOGLE_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                 "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Fracture,Pneumothorax,"
                 "Airspace opacity,Nodule or mass,Set Id")


def _google(root, rows):
    (root / "google2019_nih-chest-xray-labels.csv").write_text("\n".join([GOOGLE_HEADER, *rows]) + "\n")


def test_google_labels_replace_the_test_labels(make_layout, tmp_path):
    root = make_layout(tmp_path / "nih", test=("00000004_000.png", "00000003_000.png"))
    _google(root, ["00000004_000.png,Mass|Nodule,0,4,33,F,PA,2500,2048,0.168,0.168,NO,YES,NO,YES,test",
                   "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143,YES,NO,NO,NO,val"])
    d = src.load(root, test_labels="google2019")
    assert d.findings[-3:] == ("Airspace opacity", "Fracture", "Nodule or mass") and len(d.findings) == 17
    m = d.manifest.set_index("image_id")
    assert "00000003_000.png" not in m.index            # a test image Google did not relabel: left out, counted
    assert d.excluded == {"NIH test image not relabelled (google2019)": 1}
    test = m.loc["00000004_000.png"]
    assert test["Pneumothorax"] == 1 and test["Nodule or mass"] == 1 and test["Fracture"] == 0
    assert np.isnan(test["Mass"]) and np.isnan(test["Cardiomegaly"])     # NIH's labels are not the test labels
    assert test["label_method"] == "radiologist" and test["label_source"] == "google2019"
    train = m.loc["00000001_000.png"]                    # Google's val images keep NIH's labels for training
    assert train["Cardiomegaly"] == 1 and np.isnan(train["Fracture"]) and train["label_method"] == "nlp"
    assert len(d.boxes) == 1 and d.files["test_split_labels"].startswith("google2019")


def test_google_labels_bad_input(make_layout, tmp_path):
    root = make_layout(tmp_path / "nih")
    with pytest.raises(CxrDataError, match="test_labels=google2019 needs"):
        src.load(root, test_labels="google2019")
    _google(root, ["00000004_000.png,Mass,0,4,33,F,PA,2500,2048,0.168,0.168,NO,MAYBE,NO,YES,test"])
    with pytest.raises(CxrDataError, match="line 2: Pneumothorax is 'MAYBE'"):
        src.load(root, test_labels="google2019")
    _google(root, ["00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143,NO,NO,NO,NO,test"])
    with pytest.raises(CxrDataError, match="not in NIH's test list"):
        src.load(root, test_labels="google2019")
    with pytest.raises(Exception, match="unknown test_labels"):
        src.load(root, test_labels="chexpert")


def test_real_google_relabels(shared_dir, tmp_path):
    nih = shared_dir / "nih"
    for name in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz", "train_val_list.txt", "test_list.txt"):
        (tmp_path / name).symlink_to(nih / name)
    (tmp_path / "google2019_nih-chest-xray-labels.csv.gz").symlink_to(
        shared_dir / "labels" / "google2019_nih-chest-xray-labels.csv.gz")
    d = src.load(tmp_path, test_labels="google2019")
    counts = d.release_counts
    assert (counts["google2019_images"], counts["google2019_val"], counts["google2019_test"]) == (4376, 2414, 1962)
    m = d.manifest
    test = m[m["split"] == "test"]
    assert len(test) == 1962 and (test["label_method"] == "radiologist").all()
    assert d.excluded["NIH test image not relabelled (google2019)"] == 25596 - 1962
    assert {f: int(test[f].sum()) for f in ("Pneumothorax", "Airspace opacity", "Fracture", "Nodule or mass")} == \
        {"Pneumothorax": 195, "Airspace opacity": 1135, "Fracture": 72, "Nodule or mass": 295}
    assert len(d.missing) == len(m)
