"""The RSNA Pneumonia source reads the real layout: the real stage-2 label file (one row per box,
blank box cells on negative rows) plain, gzipped or in Kaggle's zip, images absent; the detailed
class file checked against Target; view, sex and age from torchxrayvision's header table or the
DICOM headers; the card's fixed split; the phantom's exact formats; and bad input that names the file."""

import gzip
import logging
import shutil
import zipfile

import numpy as np
import pandas as pd
import pydicom
import pytest

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.datasets.rsna_pneumonia import phantom
from cxr_tf.datasets.rsna_pneumonia import source as src
from cxr_tf.sources import manifest

LABEL_ZIP = "kaggle_stage_2_train_labels.csv.zip"
HEADER_TABLE = "kaggle_stage_2_train_images_dicom_headers.csv.gz"
HEADER = "patientId,x,y,width,height,Target"
NEG, POS = "0004cfab-14fd-4e49-80ba-63a80b6bddd6", "00436515-870c-4b36-a041-de91049b9ab4"
LABELS = [f"{NEG},,,,,0", f"{POS},264.0,152.0,213.0,379.0,1", f"{POS},562.0,152.0,256.0,453.0,1"]
CLASSES = [f"{NEG},No Lung Opacity / Not Normal", f"{POS},Lung Opacity", f"{POS},Lung Opacity"]


@pytest.fixture(scope="module")
def real(shared_dir, tmp_path_factory):
    """The real label file under the release's own name (images absent), read once without and
    once with torchxrayvision's header table beside it."""
    labels = shared_dir / "labels"
    bare, with_table = tmp_path_factory.mktemp("rsna_real"), tmp_path_factory.mktemp("rsna_real_table")
    for folder in (bare, with_table):
        (folder / "stage_2_train_labels.csv.zip").symlink_to(labels / LABEL_ZIP)
    (with_table / HEADER_TABLE).symlink_to(labels / HEADER_TABLE)
    return {"dir": bare, "bare": src.load(bare), "table": src.load(with_table), "labels": labels}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A small phantom release with the class file and the header table."""
    root = tmp_path_factory.mktemp("rsna_phantom")
    info = phantom.write_dataset(root, n_images=24, size=48, seed=3, workers=1, header_table=True)
    return root, info


def _tree(root, labels=LABELS, classes=CLASSES, header=HEADER, name="stage_2_train_labels.csv"):
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("\n".join([header, *labels]) + "\n")
    if classes is not None:
        (root / "stage_2_detailed_class_info.csv").write_text("\n".join(["patientId,class", *classes]) + "\n")
    return root


def test_real_label_file_counts_with_the_images_absent(real):
    d = real["bare"]
    m = d.manifest
    assert len(m) == 26684 and m["patient"].nunique() == 26684 and len(d.missing) == 26684
    assert int((m["Pneumonia"] == 1).sum()) == 6012 and int((m["Pneumonia"] == 0).sum()) == 20672
    assert len(d.boxes) == 9555 and d.boxes["image_id"].nunique() == 6012 and set(d.boxes["finding"]) == {"Pneumonia"}
    assert d.release_counts["label_rows"] == 30227 and d.release_counts["images_without_header"] == 26684
    assert m["n_boxes"].value_counts().to_dict() == {0: 20672, 2: 3266, 1: 2614, 3: 119, 4: 13}
    # no class file: its three findings are blank; no header: view, sex, age are blank
    assert m[["Lung Opacity", "No Lung Opacity / Not Normal", "Normal"]].isna().all().all()
    assert (m["view"] == "").all() and (m["sex"] == "").all() and m["age"].isna().all()
    # boxes are floats in the 1024-pixel DICOM and keep the file's values
    box = d.boxes[d.boxes["image_id"] == POS].sort_values("x")
    assert box[["x", "y", "w", "h"]].to_numpy().tolist() == [[264, 152, 213, 379], [562, 152, 256, 453]]
    assert d.bbox_frame is None and ((d.boxes["x"] + d.boxes["w"]).max(), (d.boxes["y"] + d.boxes["h"]).max()) == (
        1024, 1024)
    assert m.loc[m["image_id"] == POS, "path"].item() == f"stage_2_train_images/{POS}.dcm"
    manifest.validate(m, d.findings, where="real")
    expected = cards.dataset_card("rsna_pneumonia")["expected"]
    assert {k: d.release_counts[k] for k in ("images", "patients", "label_rows", "positive_images", "boxes")} == {
        k: expected[k] for k in ("images", "patients", "label_rows", "positive_images", "boxes")}


def test_real_header_table_gives_view_sex_and_age(real):
    d = real["table"]
    m = d.manifest
    assert m["sex"].value_counts().to_dict() == {"M": 15166, "F": 11518}
    assert m["view"].value_counts().to_dict() == {"PA": 14511, "AP": 12173}
    assert m["age"].notna().all() and m["age"].min() == 1 and int((m["age"] > 120).sum()) == 5   # kept as written
    assert d.release_counts["images_without_header"] == 0 and d.files["headers"].endswith(HEADER_TABLE)
    expected = cards.dataset_card("rsna_pneumonia")["expected"]
    assert {k: d.release_counts[k] for k in ("sex_M", "sex_F", "view_PA", "view_AP")} == {
        k: expected[k] for k in ("sex_M", "sex_F", "view_PA", "view_AP")}
    pd.testing.assert_frame_equal(m.drop(columns=["view", "sex", "age"]),
                                  real["bare"].manifest.drop(columns=["view", "sex", "age"]))


def test_real_official_split_is_the_cards_and_patient_disjoint(real):
    m = real["bare"].manifest
    assert m["split"].value_counts().to_dict() == {"train": 21347, "val": 2669, "test": 2668}
    assert m.groupby("patient")["split"].nunique().max() == 1


def test_official_split_ignores_the_seed_random_follows_it(tree):
    root, _ = tree
    official = src.load(root, seed=1).manifest["split"]
    assert (src.load(root, seed=2).manifest["split"] == official).all()
    random = [src.load(root, split="random", seed=s).manifest for s in (1, 2)]
    assert (random[0]["split"] != random[1]["split"]).any()
    assert all(r.groupby("patient")["split"].nunique().max() == 1 for r in random)
    wide = src.load(root, split="random", seed=1, fractions=[0.5, 0.25, 0.25]).manifest
    assert wide["split"].value_counts().to_dict() == {"train": 12, "val": 6, "test": 6}


def test_stats_describes_the_real_label_file(real, tmp_path):
    from cxr_tf.studies.stats import stats

    c = stats(tmp_path / "stats", dataset="rsna_pneumonia", data_dir=real["dir"], figures_too=False)
    assert (c["images"], c["patients"], c["positive_findings"], c["images_on_disk"], c["shared_patients"]) == (
        26684, 26684, 6012, 0, 0)
    assert "Pneumonia | 6,012" in (tmp_path / "stats" / "stats.md").read_text()


def test_plain_gzipped_and_zipped_label_files_read_the_same(real, tmp_path):
    with zipfile.ZipFile(real["labels"] / LABEL_ZIP) as zf:
        text = zf.read("stage_2_train_labels.csv")
    assert text.decode().splitlines()[0] == HEADER
    lines = text.decode().splitlines()[:200]
    plain = _tree(tmp_path / "plain", labels=lines[1:], classes=None)
    gz = tmp_path / "gz"
    gz.mkdir()
    (gz / "stage_2_train_labels.csv.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    xrv = _tree(tmp_path / "xrv", labels=lines[1:], classes=None, name="kaggle_stage_2_train_labels.csv")
    frames = [src.load(d).manifest for d in (plain, gz, xrv)]
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], other)
    assert len(frames[0]) == len({line.split(",")[0] for line in lines[1:]})


def test_class_file_gives_one_hot_classes(tmp_path):
    d = src.load(_tree(tmp_path / "r"), split="random")
    m = d.manifest.set_index("image_id")
    assert m.loc[POS, ["Pneumonia", "Lung Opacity", "No Lung Opacity / Not Normal", "Normal"]].tolist() == [1, 1, 0, 0]
    assert m.loc[NEG, ["Pneumonia", "Lung Opacity", "No Lung Opacity / Not Normal", "Normal"]].tolist() == [0, 0, 1, 0]
    assert m.loc[POS, "detailed_class"] == "Lung Opacity" and m.loc[POS, "n_boxes"] == 2
    assert d.release_counts["lung_opacity_images"] == 1 and d.release_counts["no_lung_opacity_not_normal_images"] == 1
    assert sorted(d.missing) == sorted([NEG, POS])        # no images: listed as missing, rows kept


@pytest.mark.parametrize("classes, match", [
    ([f"{NEG},Abnormal", *CLASSES[1:]], r"stage_2_detailed_class_info.csv: line 2: class is 'Abnormal'; allowed"),
    ([CLASSES[0], f"{POS},Lung Opacity", f"{POS},Normal"], r"line 4: .* is 'Normal' here but 'Lung Opacity' on line 3"),
    ([f"{NEG},Lung Opacity", *CLASSES[1:]], r"line 2: 0004cfab.* is 'Lung Opacity' but has Target 0 .*\(line 2\)"),
    (CLASSES[1:], r"1 patientId\(s\) of stage_2_train_labels.csv are not in stage_2_detailed_class_info.csv"),
    ([*CLASSES, "ffffffff-0000-4000-8000-000000000000,Normal"], r"1 patientId\(s\) of stage_2_detailed_class_info"),
])
def test_class_file_errors_name_the_file_and_line(tmp_path, classes, match):
    with pytest.raises(CxrDataError, match=match):
        src.load(_tree(tmp_path / "r", classes=classes))


@pytest.mark.parametrize("labels, header, match", [
    (LABELS, "patientId,x,y,w,h,Target", r"stage_2_train_labels.csv: missing column\(s\) \['width', 'height'\]"),
    ([f"{NEG},,,,,2", *LABELS[1:]], HEADER, r"stage_2_train_labels.csv: line 2: Target is '2'; allowed: 0 or 1"),
    ([f"{NEG},,,,,0", f"{POS},,,,,1"], HEADER, r"line 3: Target 1 needs a whole box"),
    ([f"{NEG},1.0,2.0,3.0,4.0,0", *LABELS[1:]], HEADER, r"line 2: a box .* on a row with Target 0"),
    ([*LABELS, f"{POS},,,,,0"], HEADER, r"line 5: 00436515.* has Target 0 here but 1 on line 3"),
    ([*LABELS[:2], f"{POS},562.0,152.0,0.0,453.0,1"], HEADER, r"line 4: box .* has no positive, finite size"),
    ([*LABELS[:2], f"{POS},a,152.0,1.0,453.0,1"], HEADER, r"line 4: non-numeric box"),
    ([*LABELS, f"{NEG},,,,0"], HEADER, r"line 5 has 5 fields, the header 6"),
    ([",,,,,0"], HEADER, r"line 2: empty patientId"),
])
def test_label_file_errors_name_the_file_and_line(tmp_path, labels, header, match):
    with pytest.raises(CxrDataError, match=match):
        src.load(_tree(tmp_path / "r", labels=labels, header=header, classes=None))


def test_missing_and_unreadable_files_are_clear(tmp_path):
    with pytest.raises(CxrDataError, match="no label file; expected stage_2_train_labels.csv"):
        src.load(tmp_path)
    (tmp_path / "stage_2_train_labels.csv.zip").write_bytes(b"not a zip")
    with pytest.raises(CxrDataError, match=r"stage_2_train_labels.csv.zip: cannot read"):
        src.load(tmp_path)
    with zipfile.ZipFile(tmp_path / "stage_2_train_labels.csv.zip", "w") as zf:
        zf.writestr("readme.txt", "nothing")
    with pytest.raises(CxrDataError, match="expected one CSV inside the zip"):
        src.load(tmp_path)


def test_options_are_checked(tmp_path):
    root = _tree(tmp_path / "r")
    with pytest.raises(CxrConfigError, match="unknown views 'lateral'"):
        src.load(root, views="lateral")
    with pytest.raises(CxrConfigError, match="unknown headers 'pacs'"):
        src.load(root, headers="pacs")
    with pytest.raises(CxrConfigError, match="fractions apply to --split random"):
        src.load(root, fractions=[0.5, 0.25, 0.25])
    with pytest.raises(CxrDataError, match="headers=table but no stage_2_train_images_dicom_headers.csv"):
        src.load(root, headers="table")
    with pytest.raises(CxrDataError, match="views=PA needs each image's ViewPosition"):
        src.load(root, views="PA")


def test_phantom_writes_the_real_formats(tree, real):
    root, info = tree
    with zipfile.ZipFile(real["labels"] / LABEL_ZIP) as zf:
        real_lines = zf.read("stage_2_train_labels.csv").decode().splitlines()
    lines = (root / "stage_2_train_labels.csv").read_text().splitlines()
    assert lines[0] == real_lines[0]
    shape = r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12},((\d+\.\d,){4}1|,,,,0)$"
    assert pd.Series(real_lines[1:50]).str.match(shape).all() and pd.Series(lines[1:]).str.match(shape).all()
    table = (gzip.decompress((root / "stage_2_train_images_dicom_headers.csv.gz").read_bytes()).decode().splitlines())
    with gzip.open(real["labels"] / HEADER_TABLE, "rt") as fh:
        assert table[0] == fh.readline().rstrip("\n")
    assert (root / "stage_2_detailed_class_info.csv").read_text().splitlines()[0] == "patientId,class"
    assert len(lines) - 1 == info["label_rows"] and sum(info["classes"].values()) == info["images"] == 24
    d = src.load(root, headers="dicom")
    first = root / d.manifest["path"].iloc[0]
    ds = pydicom.dcmread(first)
    assert (ds.Modality, ds.PhotometricInterpretation, ds.BitsStored, ds.file_meta.TransferSyntaxUID) == (
        "CR", "MONOCHROME2", 8, pydicom.uid.JPEGBaseline8Bit)
    assert ds.PatientID == d.manifest["image_id"].iloc[0] and len(ds.PatientAge) == 3
    assert ds.pixel_array.shape == (48, 48)
    assert ds.SeriesDescription == f"view: {ds.ViewPosition}"


def test_phantom_labels_boxes_and_headers_agree(tree):
    root, info = tree
    by_dicom, by_table = src.load(root, headers="dicom"), src.load(root)
    assert by_table.files["headers"].endswith("stage_2_train_images_dicom_headers.csv.gz")
    assert "headers" not in by_dicom.files and by_dicom.files["dicom_headers"].startswith("24 file(s)")
    pd.testing.assert_frame_equal(by_dicom.manifest, by_table.manifest)
    m = by_table.manifest
    assert by_table.missing == [] and len(by_table.boxes) == info["boxes"] and set(m["view"]) <= {"PA", "AP"}
    assert (m["Pneumonia"] == m["Lung Opacity"]).all() and (m[list(by_table.findings[1:])].sum(axis=1) == 1).all()
    assert (m["Pneumonia"] == 1).sum() == info["positive_images"] and set(m["detailed_class"]) == set(info["classes"])
    assert m.set_index("image_id")["n_boxes"].to_dict() == {
        i: int((by_table.boxes["image_id"] == i).sum()) for i in m["image_id"]}
    b = by_table.boxes
    assert (b[["x", "y"]] >= 0).all().all() and (b["x"] + b["w"]).max() <= 48 and (b["y"] + b["h"]).max() <= 48

def test_phantom_is_byte_identical_for_a_seed(tree, tmp_path):
    root, _ = tree
    phantom.write_dataset(tmp_path, n_images=24, size=48, seed=3, workers=2, header_table=True)
    for rel in ("stage_2_train_labels.csv", "stage_2_detailed_class_info.csv",
                "stage_2_train_images_dicom_headers.csv.gz", *src.load(root).manifest["path"][:3]):
        assert (tmp_path / rel).read_bytes() == (root / rel).read_bytes(), rel


def test_views_filter_is_counted(tree):
    root, _ = tree
    full = src.load(root)
    pa = src.load(root, views="PA")
    n_ap = int((full.manifest["view"] == "AP").sum())
    assert set(pa.manifest["view"]) == {"PA"} and pa.excluded == {"views=PA": n_ap}
    assert set(pa.boxes["image_id"]) <= set(pa.manifest["image_id"])


def test_a_missing_or_damaged_dicom_is_listed_and_counted(tree, tmp_path, caplog):
    root, _ = tree
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "stage_2_train_images_dicom_headers.csv.gz").unlink()
    m = src.load(copy).manifest
    gone, damaged = m["path"].iloc[0], m["path"].iloc[1]
    (copy / gone).unlink()
    (copy / damaged).write_bytes(b"\x00" * 10)
    with caplog.at_level(logging.WARNING, logger="cxr_tf.datasets.rsna_pneumonia.source"):
        d = src.load(copy)
    assert d.missing == [m["image_id"].iloc[0]] and len(d.manifest) == 24
    assert d.release_counts["images_without_header"] == 2 and (d.manifest["view"].iloc[:2] == "").all()
    assert f"{copy / damaged}: no ViewPosition, PatientSex, PatientAge in the header" in caplog.text
    assert d.manifest["view"].iloc[2:].isin(["PA", "AP"]).all()


@pytest.mark.parametrize("text, years", [("51", 51), ("058", 58), ("058Y", 58), ("006M", 0.5), ("43.0", 43),
                                         ("", np.nan), ("adult", np.nan), (None, np.nan)])
def test_dicom_age_strings(text, years):
    np.testing.assert_equal(src.parse_age(text), years)
