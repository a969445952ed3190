"""The CheXpert source reads the real layout: the header of ../shared/README.md, paths that begin
with the release folder's name (renamed or of the other variant), all four label states, the
labelled test set by column names, views and projections, and bad input that names the file."""

import shutil

import numpy as np
import pandas as pd
import pytest

from cxr_tf.core.errors import CxrConfigError, CxrDataError, LeakageError
from cxr_tf.datasets.chexpert import source as src

HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
          "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,"
          "Pleural Other,Fracture,Support Devices")
TRAIN = [
    # 1 / 0 / -1 / blank, and a lateral with blank AP/PA
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg,Female,87,Lateral,,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,PA,,,,,,1.0,,,,0.0,,,,",
]
VALID = [
    "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,0.0,1.0,1.0,1.0,0.0,"
    "1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0",
    "CheXpert-v1.0-small/valid/patient64542/study1/view1_frontal.jpg,Male,70,Frontal,PA,1.0,0.0,0.0,0.0,0.0,"
    "0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
]
TEST_HEADER = ("Path,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,"
               "Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,"
               "Support Devices")
TEST = ["test/patient64741/study1/view1_frontal.jpg,0,0,1,0,0,0,0,0,0,0,1,0,0,0"]


def _tree(root, train=TRAIN, valid=VALID, test=None, header=HEADER):
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.csv").write_text("\n".join([header, *train]) + "\n")
    (root / "valid.csv").write_text("\n".join([header, *valid]) + "\n")
    if test is not None:
        (root / "test_labels.csv").write_text("\n".join([TEST_HEADER, *test]) + "\n")
    for line in [*train, *valid, *(test or [])]:
        rel = line.split(",")[0].split("/")
        path = root.joinpath(*(rel[1:] if rel[0] not in ("train", "valid", "test") else rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def test_real_header_paths_and_four_label_states(tmp_path):
    d = src.load(_tree(tmp_path / "CheXpert-v1.0-small"), views="all")
    m = d.manifest.set_index("image_id")
    assert list(d.manifest.columns[:7]) == ["path", "image_id", "patient", "study", "view", "age", "sex"]
    a = m.loc["train/patient00001/study1/view1_frontal.jpg"]
    assert a["No Finding"] == 1 and a["Pneumothorax"] == 0 and a["Support Devices"] == 1 and np.isnan(a["Edema"])
    assert (a["patient"], a["study"], a["view"], a["age"], a["sex"]) == ("patient00001", "patient00001/study1",
                                                                         "AP", 68, "Female")
    b = m.loc["train/patient00002/study2/view1_frontal.jpg"]
    assert b["Cardiomegaly"] == -1 and b["Lung Opacity"] == 1 and b["Fracture"] == 1 and np.isnan(b["No Finding"])
    lateral = m.loc["train/patient00002/study2/view2_lateral.jpg"]
    assert lateral["view"] == "LATERAL" and lateral["frontal_lateral"] == "Lateral" and lateral["ap_pa"] == ""
    assert set(m.loc[m["source_csv"] == "valid", "split"]) == {"val"}
    assert set(m.loc[m["source_csv"] == "train", "split"]) == {"train"}
    assert d.files["path_prefix"] == "CheXpert-v1.0-small" and d.missing == []


def test_frontal_default_and_projection_filters_are_counted(tmp_path):
    root = _tree(tmp_path / "CheXpert-v1.0-small")
    d = src.load(root)
    assert (d.manifest["frontal_lateral"] == "Frontal").all() and d.excluded == {"views=frontal": 1}
    d = src.load(root, views="lateral")
    assert list(d.manifest["image_id"]) == ["train/patient00002/study2/view2_lateral.jpg"]
    d = src.load(root, projection="PA")
    assert set(d.manifest["view"]) == {"PA"} and d.excluded == {"views=frontal": 1, "projection=PA": 3}
    with pytest.raises(CxrConfigError, match="views: unknown views 'side'"):
        src.load(root, views="side")


def test_renamed_folder_and_other_variant_prefix(tmp_path, caplog):
    root = _tree(tmp_path / "my_chexpert")
    d = src.load(root)
    assert len(d.manifest) == 5 and d.missing == []
    assert "begin with CheXpert-v1.0-small" in caplog.text and "my_chexpert" in caplog.text
    full = [line.replace("CheXpert-v1.0-small/", "CheXpert-v1.0/") for line in TRAIN]
    d = src.load(_tree(tmp_path / "CheXpert-v1.0-small-2", train=full))
    assert d.files["path_prefix"] == "CheXpert-v1.0, CheXpert-v1.0-small" and d.missing == []


def test_test_set_by_column_names_and_the_split_without_it(tmp_path):
    d = src.load(_tree(tmp_path / "CheXpert-v1.0-small", test=TEST))
    t = d.manifest.set_index("image_id").loc["test/patient64741/study1/view1_frontal.jpg"]
    assert t["split"] == "test" and t["Cardiomegaly"] == 1 and t["Pleural Effusion"] == 1 and t["Edema"] == 0
    assert t["sex"] == "" and np.isnan(t["age"]) and t["frontal_lateral"] == "Frontal"
    assert d.release_counts["test_images"] == 1 and d.release_counts["test_patients"] == 1
    with pytest.raises(CxrConfigError, match="val_fraction"):
        src.load(tmp_path / "CheXpert-v1.0-small", val_fraction=0.5)
    carved = src.load(_tree(tmp_path / "b", train=TRAIN * 1), val_fraction=0.5, seed=0)
    assert set(carved.manifest.loc[carved.manifest["source_csv"] == "valid", "split"]) == {"test"}
    assert "val" in set(carved.manifest.loc[carved.manifest["source_csv"] == "train", "split"])


def test_random_split_is_patient_level(tmp_path):
    d = src.load(_tree(tmp_path / "CheXpert-v1.0-small", test=TEST), split="random", seed=3, views="all")
    assert d.manifest.groupby("patient")["split"].nunique().max() == 1


@pytest.mark.parametrize("train,match", [
    (TRAIN[:1] + ["CheXpert-v1.0-small/train/patient00009/study1/view1_frontal.jpg,Male,50,Frontal,AP,"
                  "1.0,,,,,,,,,2.0,,,,"], r"train.csv: line 3: Pneumothorax is '2.0'"),
    (["CheXpert-v1.0-small/train/p9/view1.jpg,Male,50,Frontal,AP,,,,,,,,,,,,,,"], "line 2: path"),
    (["CheXpert-v1.0-small/valid/patient00009/study1/view1_frontal.jpg,Male,50,Frontal,AP,,,,,,,,,,,,,,"],
     "line 2: path .* is not <prefix>/train/"),
    (TRAIN[:1] + ["CheXpert-v1.0-small/train/patient00009/study1/view1_frontal.jpg,Male"], "line 3 has 2 fields"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, train, match):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text("\n".join([HEADER, *train]) + "\n")
    (root / "valid.csv").write_text("\n".join([HEADER, *VALID]) + "\n")
    with pytest.raises(CxrDataError, match=match):
        src.load(root)


def test_missing_files_and_columns(tmp_path):
    root = _tree(tmp_path / "CheXpert-v1.0-small")
    (root / "train" / "patient00003" / "study1" / "view1_frontal.jpg").unlink()
    assert src.load(root).missing == ["train/patient00003/study1/view1_frontal.jpg"]
    (root / "valid.csv").write_text(HEADER.replace("Edema,", "") + "\n")
    with pytest.raises(CxrDataError, match=r"valid.csv: missing column\(s\) \['Edema'\]"):
        src.load(root)
    shutil.rmtree(root)
    root.mkdir()
    with pytest.raises(CxrDataError, match="no train.csv; --data-dir must be the folder holding train.csv"):
        src.load(root)


def test_leakage_between_train_and_valid_is_refused(tmp_path):
    leaky = VALID + ["CheXpert-v1.0-small/valid/patient00001/study9/view1_frontal.jpg,Male,70,Frontal,PA,"
                     "1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"]
    with pytest.raises(LeakageError, match="patient00001"):
        src.load(_tree(tmp_path / "CheXpert-v1.0-small", valid=leaky))


def test_missing_and_corrupt_images_as_for_chestxray14(chexpert_dir, tmp_path):
    """The same bad-image handling as every source: an error naming the file, or with
    --allow-missing a counted skip listed in skipped.csv."""
    from cxr_tf.core.errors import CxrImageError, MissingImagesError
    from cxr_tf.records.prepare import prepare
    root = tmp_path / "CheXpert-v1.0-small"
    shutil.copytree(chexpert_dir, root)
    frontal = sorted(root.glob("train/patient*/study*/view1_frontal.jpg"))
    frontal[0].unlink()
    frontal[1].write_bytes(frontal[1].read_bytes()[:300])          # truncated JPEG
    with pytest.raises(MissingImagesError, match=frontal[0].relative_to(root).as_posix()):
        prepare("chexpert", root, tmp_path / "rec", size=32, workers=1)
    frontal[0].write_bytes(b"")
    with pytest.raises(CxrImageError, match="view1_frontal.jpg"):
        prepare("chexpert", root, tmp_path / "rec", size=32, workers=1)
    frontal[0].unlink()
    s = prepare("chexpert", root, tmp_path / "rec", size=32, workers=1, allow_missing=True)
    assert s["counts"]["missing_images"] == 1 and s["counts"]["unreadable_images"] == 1
    skipped = pd.read_csv(tmp_path / "rec" / "skipped.csv")
    assert set(skipped["image_id"]) == {p.relative_to(root).as_posix() for p in frontal[:2]}


def test_phantom_tree_prepares_with_exact_labels_and_views(chexpert_dir, chexpert_records):
    """The phantom release through prepare: train keeps 1/0/-1/blank, valid and test are 0/1."""
    from cxr_tf.records.reader import RecordsDir
    rec = RecordsDir(chexpert_records)
    man = rec.manifest
    findings = rec.findings
    assert rec.dataset == "chexpert" and set(rec.splits) == {"train", "val", "test"}
    assert (man["frontal_lateral"] == "Frontal").all()
    assert rec.summary["counts"]["excluded_by_filter"]["views=frontal"] > 0
    train = man[man["split"] == "train"][findings].to_numpy()
    assert {1.0, 0.0, -1.0} <= set(np.unique(train[np.isfinite(train)])) and np.isnan(train).any()
    for split in ("val", "test"):
        vals = man[man["split"] == split][findings].to_numpy()
        assert np.isfinite(vals).all() and set(np.unique(vals)) <= {0.0, 1.0}
    csv = pd.read_csv(chexpert_dir / "train.csv")
    frontal = csv[csv["Frontal/Lateral"] == "Frontal"]
    want = frontal.set_index(frontal["Path"].str.split("/", n=1).str[1])
    got = man[man["split"] == "train"].set_index("image_id")
    np.testing.assert_array_equal(got[findings].to_numpy(), want.loc[got.index, findings].to_numpy())
    assert (got["view"] == want.loc[got.index, "AP/PA"]).all()
