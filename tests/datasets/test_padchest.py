"""PadChest: the real label file read with the images absent (exact counts, the Labels list text,
unlabelled rows, ages, views, the two label methods, a split that filters do not move), and a
phantom release in the real layout (header, 16-bit PNGs in ImageDir folders, quirks); options are
counted, never silent, and bad input fails naming the file and line."""

import ast
import csv
import gzip
import io
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.datasets.padchest import phantom
from cxr_tf.datasets.padchest import source as src
from cxr_tf.sources import manifest

CARD = cards.dataset_card("padchest")
FINDINGS = CARD["findings"]
REAL = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
# Projection and MethodLabel counts of the real file (../shared/README.md).
PROJECTIONS = {"pa_images": 91728, "l_images": 49579, "ap_horizontal_images": 14346, "ap_images": 4559,
               "costal_images": 630, "exclude_images": 11, "unk_images": 8}


# ------------------------------------------------------------------------------ the real label file
@pytest.fixture(scope="module")
def real_dir(shared_dir, tmp_path_factory):
    """A PadChest folder holding only the real label file, under the release's own name."""
    folder = tmp_path_factory.mktemp("padchest_real")
    (folder / REAL).symlink_to(shared_dir / "labels" / REAL)
    return folder


@pytest.fixture(scope="module")
def real(real_dir):
    """The real file through ``load`` with the default options."""
    return src.load(real_dir)


@pytest.fixture(scope="module")
def real_table(real_dir):
    """The real file's rows, read once for the tests that only change the options."""
    return src.read_labels(real_dir / REAL)


@pytest.fixture(scope="module")
def real_all(real_dir, real_table):
    """The real file with every view and the unlabelled rows kept blank."""
    return src.assemble(real_dir, real_dir / REAL, real_table, views="all", unlabelled="blank")


def test_real_file_counts_with_images_absent(real):
    counts = real.release_counts
    assert (counts["images"], counts["patients"], counts["studies"]) == (160861, 67625, 109931)
    assert {k: counts[k] for k in PROJECTIONS} == PROJECTIONS
    assert (counts["physician_images"], counts["rnn_model_images"]) == (39053, 121808)
    assert (counts["unlabelled_images"], counts["no_labels_images"]) == (2164, 103)
    assert counts["studies_with_several_patients"] == 1
    assert all(counts[k] == v for k, v in CARD["expected"].items())
    # the defaults: frontal views of labelled rows; every filter counted, every image missing
    assert real.excluded == {"Projection EXCLUDE": 11, "Projection UNK": 8, "unlabelled=drop": 2164,
                             "views=frontal": 49588}
    frame = real.manifest
    assert len(frame) == 109090 == 160861 - sum(real.excluded.values())
    assert sorted(real.missing) == sorted(frame["image_id"])
    assert set(frame["view"]) == {"PA", "AP", "AP_horizontal"}
    assert list(frame.columns[:7 + len(FINDINGS)]) == [*manifest.BASE_COLUMNS, *FINDINGS]
    assert frame["path"].str.fullmatch(r"(\d|[1-4]\d|50|54)/[0-9a-z_-]+\.png").all()
    assert frame.groupby("patient")["split"].nunique().max() == 1
    assert real.files["labels"].endswith(REAL)


def test_real_labels_terms_and_unlabelled_rows(real_all):
    data = real_all
    frame = data.manifest
    assert len(frame) == 160842 and data.excluded == {"Projection EXCLUDE": 11, "Projection UNK": 8}
    assert frame["view"].value_counts().to_dict() == {"PA": 91728, "L": 49579, "AP_horizontal": 14346,
                                                      "AP": 4559, "COSTAL": 630}
    values = frame[FINDINGS].to_numpy(np.float64)
    blank = np.isnan(values).all(axis=1)
    assert blank.sum() == 2164 and not np.isnan(values[~blank]).any()   # exhaustive: 0 or 1, never blank
    assert set(np.unique(values[~blank])) == {0.0, 1.0}
    terms = frame["terms"]
    assert (terms[blank] == "exclude").sum() == 1284 and (terms[blank] == "").sum() == 880   # 777 [''] + 103 nan
    positives = {f: int((frame[f] == 1).sum()) for f in ("normal", "cardiomegaly", "pleural effusion", "atelectasis",
                                                         "pneumothorax", "hiatal hernia", "fracture", "mass")}
    assert positives == {"normal": 50615, "cardiomegaly": 15019, "pleural effusion": 10017, "atelectasis": 8961,
                         "pneumothorax": 573, "hiatal hernia": 2361, "fracture": 4624, "mass": 1382}
    # a term written with a leading space (['infiltrates', ' normal']) counts as the term
    both = frame[terms == "infiltrates|normal"]
    assert len(both) == 15 and (both[["infiltrates", "normal"]] == 1).all().all()
    assert not terms.str.contains(r"(?:^|\|) | (?:\||$)").any()


def test_real_demographics_methods_and_stable_split(real_all, real):
    frame = real_all.manifest
    assert frame["label_method"].value_counts().to_dict() == {"nlp": 121789, "radiologist": 39053}
    assert frame["age"].isna().sum() == 6 and frame["age"].min() == 0 and frame["age"].max() == 105
    assert frame["pediatric"].value_counts(dropna=False).to_dict() == {False: 153650, True: 7186, pd.NA: 6}
    assert frame["sex"].value_counts().to_dict() == {"M": 80910, "F": 79910, "O": 18, "": 4}
    # the official split is drawn over the whole file: the defaults' images keep their split
    split = frame.set_index("image_id")["split"]
    default = real.manifest.set_index("image_id")["split"]
    assert (split.loc[default.index] == default).all()
    shares = frame.drop_duplicates("patient")["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.01 and abs(shares["val"] - 0.1) < 0.01


def test_stats_reads_the_real_file(real_dir, real_table, tmp_path, monkeypatch):
    from cxr_tf.studies.stats import stats

    monkeypatch.setattr(src, "read_labels", lambda path: real_table)      # read once in this module
    counts = stats(tmp_path / "stats", dataset="padchest", data_dir=real_dir, figures_too=False)
    assert (counts["images"], counts["images_on_disk"], counts["shared_patients"]) == (109090, 0, 0)
    text = (tmp_path / "stats" / "stats.md").read_text()
    assert "Excluded by the source's filter unlabelled=drop: 2,164" in text


# ------------------------------------------------------------------------------ a phantom release
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("padchest_phantom")
    info = phantom.write_dataset(root, n_images=48, n_patients=12, size=40, seed=3, workers=1)
    return root, info


def _rows(root):
    with gzip.open(root / REAL, "rt", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_phantom_header_is_the_real_header(tree, shared_dir):
    with gzip.open(tree[0] / REAL, "rt") as fh, gzip.open(shared_dir / "labels" / REAL, "rt") as real:
        assert fh.readline() == real.readline() == ",".join(phantom.HEADER) + "\n"


def test_phantom_label_file_in_the_real_format(tree):
    root, info = tree
    rows = _rows(root)
    assert list(rows[0]) == phantom.HEADER
    assert len(rows) == info["images"] == 48 and [r[""] for r in rows] == [str(k) for k in range(48)]
    for r in rows:
        assert re.fullmatch(r"(2168401113669640\d{29}_\d\d-\d{3}-\d{3}|\d{38}_[0-9a-z]{6})\.png", r["ImageID"])
        assert r["ImageID"].startswith(r["StudyID"] + "_") and re.fullmatch(r"\d{38,39}", r["PatientID"])
        assert re.fullmatch(r"(19|20)\d\d\.0|", r["PatientBirth"])
        assert re.fullmatch(r"20(09|1[0-7])(0[1-9]|1[0-2])(0[1-9]|[12]\d)", r["StudyDate_DICOM"])
        if r["Labels"] != "nan":
            assert isinstance(ast.literal_eval(r["Labels"]), list)
    labels = [r["Labels"] for r in rows]
    assert {"nan", "['']", "['exclude']", "['normal']"} <= set(labels)
    assert any(", ' " in t for t in labels)                                     # terms with a leading space
    assert {"EXCLUDE", "UNK", "L", "PA"} <= {r["Projection"] for r in rows}
    assert {"Physician", "RNN_model"} == {r["MethodLabel"] for r in rows}
    for r in rows:                                                              # 16-bit PNGs in ImageDir folders
        with Image.open(root / r["ImageDir"] / r["ImageID"]) as im:
            pixels = np.asarray(im)
            assert im.mode == "I;16" and 255 < pixels.max() < 2 ** int(r["BitsStored_DICOM"])
    assert {r["ImageDir"] for r in rows} >= {"0", "54"}


def test_phantom_reads_back_with_its_quirks(tree):
    root, info = tree
    data = src.load(root, views="all", unlabelled="blank")
    assert data.missing == [] and data.excluded == {"Projection EXCLUDE": 1, "Projection UNK": 1}
    frame = data.manifest.set_index("image_id")
    rows = {r["ImageID"]: r for r in _rows(root)}
    narrower = {t: f for f, ts in CARD["narrower"].items() for t in ts}
    for image_id, row in frame.iterrows():                    # the labels against an independent parse
        raw = rows[image_id]
        terms = set() if raw["Labels"] == "nan" else {t.strip() for t in ast.literal_eval(raw["Labels"])}
        if not terms - {"", "exclude"}:
            assert row[FINDINGS].isna().all()
            continue
        want = {t for t in terms if t in FINDINGS} | {narrower[t] for t in terms if t in narrower}
        assert {f for f in FINDINGS if row[f] == 1} == want and (row[FINDINGS].isin([0.0, 1.0])).all()
        assert row["label_method"] == ("radiologist" if raw["MethodLabel"] == "Physician" else "nlp")
        assert row["view"] == raw["Projection"] and row["study"] == raw["StudyID"]
        assert row["path"] == f"{raw['ImageDir']}/{image_id}"
    assert frame["age"].isna().any() and frame["pediatric"].eq(True).any() and (frame["sex"] == "").any()
    default = src.load(root)
    assert default.excluded["unlabelled=drop"] == info["unlabelled_images"] > 0
    assert set(default.manifest["view"]) <= {"PA", "AP", "AP_horizontal"}
    assert {"train", "val"} <= set(default.manifest["split"])


def test_options_filter_and_are_counted(tree):
    root, _ = tree
    everything = src.load(root, views="all")
    lateral = src.load(root, views="lateral")
    assert set(lateral.manifest["view"]) == {"L"}
    assert lateral.excluded["views=lateral"] == len(everything.manifest) - len(lateral.manifest)
    assert set(src.load(root, views="PA,COSTAL").manifest["view"]) <= {"PA", "COSTAL"}
    rad = src.load(root, views="all", label_method="radiologist")
    assert set(rad.manifest["label_method"]) == {"radiologist"}
    assert rad.excluded["label_method=radiologist"] == int((everything.manifest["label_method"] == "nlp").sum())
    for key, value in (("views", "sideways"), ("views", "PA,EXCLUDE"), ("label_method", "human"),
                       ("unlabelled", "zero"), ("narrower", "maybe")):
        with pytest.raises(CxrConfigError, match=key):
            src.load(root, **{key: value})


def test_splits_are_patient_level_and_official_ignores_filters(tree):
    root, _ = tree
    official = src.load(root, views="all").manifest.set_index("image_id")["split"]
    frontal = src.load(root, seed=9).manifest.set_index("image_id")["split"]
    assert (official.loc[frontal.index] == frontal).all()
    for seed in (1, 2):
        frame = src.load(root, split="random", seed=seed, fractions=[0.5, 0.25, 0.25]).manifest
        manifest.assert_patient_disjoint(frame)
        assert {"train", "val", "test"} == set(frame["split"])
    with pytest.raises(CxrConfigError, match="split"):
        src.load(root, split="sideways")


def test_flat_copy_and_plain_csv_read_the_same(tree, tmp_path):
    root, _ = tree
    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    for png in root.glob("*/*.png"):
        shutil.copy(png, flat / "images" / png.name)
    with gzip.open(root / REAL) as fh:
        (flat / REAL[:-3]).write_bytes(fh.read())
    a, b = src.load(root, views="all"), src.load(flat, views="all")
    assert b.missing == [] and (b.manifest["path"] == "images/" + b.manifest["image_id"]).all()
    pd.testing.assert_frame_equal(a.manifest.drop(columns="path"), b.manifest.drop(columns="path"))
    (flat / "images" / a.manifest["image_id"].iloc[0]).unlink()
    c = src.load(flat, views="all")
    assert c.missing == [a.manifest["image_id"].iloc[0]] and c.manifest["path"].iloc[0] == a.manifest["path"].iloc[0]


# ------------------------------------------------------------------------------ bad input
def _label_file(folder, rows, header=phantom.HEADER):
    """A plain label file in the real header; ``rows`` are dicts of the columns that matter."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"ImageDir": "0", "StudyDate_DICOM": "20140915", "PatientBirth": "1950.0", "PatientSex_DICOM": "F",
            "Projection": "PA", "MethodLabel": "Physician", "Labels": "['normal']",
            "labelCUIS": "['C1' 'C2' 'C3' 'C4' 'C5' 'C6'\n 'C7']"}            # a cell with a newline, as in the release
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for k, row in enumerate(rows):
        cells = {**base, "": str(k), "ImageID": f"s{k}_a.png", "StudyID": f"s{k}", "PatientID": f"p{k}", **row}
        writer.writerow([cells.get(h, "None") for h in header])
    (folder / REAL[:-3]).write_text(buf.getvalue())
    return folder


@pytest.mark.parametrize("row,match", [
    ({"Labels": "['cardiomegaly', ' pneumonitis']"}, r"line 6 \(s2_a.png\): unknown PadChest term 'pneumonitis'"),
    ({"Labels": "cardiomegaly, pneumonia"}, r"line 6 \(s2_a.png\): Labels 'cardiomegaly, pneumonia' is not a list"),
    ({"Projection": "OBLIQUE"}, r"line 6 \(s2_a.png\): Projection is 'OBLIQUE'"),
    ({"MethodLabel": "Doctor"}, r"line 6 \(s2_a.png\): MethodLabel is 'Doctor'"),
    ({"ImageDir": "zip1"}, r"line 6 \(s2_a.png\): ImageDir is 'zip1'"),
])
def test_bad_cells_name_the_file_and_line(tmp_path, row, match):
    root = _label_file(tmp_path / "pc", [{}, {"Labels": "['laminar atelectasis', ' cardiomegaly']"}, row])
    with pytest.raises(CxrDataError, match=REAL[:-3] + ": " + match):
        src.load(root)


def test_narrower_terms_and_labels_without_images(tmp_path):
    root = _label_file(tmp_path / "pc", [{"Labels": "['laminar atelectasis', ' cardiomegaly', ' cardiomegaly']"},
                                         {"Labels": "nan", "MethodLabel": "RNN_model"}])
    grouped = src.load(root, unlabelled="blank").manifest.set_index("image_id")
    own = src.load(root, unlabelled="blank", narrower=False).manifest.set_index("image_id")
    assert grouped.loc["s0_a.png", "atelectasis"] == 1 and own.loc["s0_a.png", "atelectasis"] == 0
    assert own.loc["s0_a.png", "cardiomegaly"] == 1
    assert grouped.loc["s0_a.png", "terms"] == "laminar atelectasis|cardiomegaly"       # stripped, repeat dropped
    assert grouped.loc["s1_a.png", FINDINGS].isna().all()
    data = src.load(root)
    assert data.missing == ["s0_a.png"] and data.excluded == {"unlabelled=drop": 1}


def test_missing_file_column_and_rows(tmp_path):
    with pytest.raises(CxrDataError, match=r"no label file; expected PADCHEST_chest_x_ray_images_labels_160K_01"):
        src.load(tmp_path)
    header = [h if h != "Projection" else "Proj" for h in phantom.HEADER]
    with pytest.raises(CxrDataError, match=r"160K_01.02.19.csv: missing column\(s\) \['Projection'\]"):
        src.load(_label_file(tmp_path / "a", [{}], header=header))
    with pytest.raises(CxrDataError, match="no image rows"):
        src.load(_label_file(tmp_path / "b", []))
    bad = _label_file(tmp_path / "c", [{}, {}])
    (bad / REAL[:-3]).write_text((bad / REAL[:-3]).read_text() + ",".join(["9"] * 40) + "\n")
    with pytest.raises(CxrDataError, match=r"160K_01.02.19.csv: line 6 has 40 fields, the header 36"):
        src.load(bad)
    short = _label_file(tmp_path / "d", [{}, {}])
    (short / REAL[:-3]).write_text((short / REAL[:-3]).read_text() + "2,s2_a.png,0\n")
    with pytest.raises(CxrDataError, match=r"line 6 \(s2_a.png\): Projection is ''"):
        src.load(short)
