"""The ChestX-ray14 source reads the real files: both Data_Entry headers, the lists, the box list
and both image folder layouts; bad input fails naming the file."""

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
