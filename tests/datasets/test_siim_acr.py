"""The SIIM-ACR source reads the real label file (its header with the space, -1 for no pneumothorax,
several rows for an image with several masks, the relative run-length encoding decoded exactly) with
the images absent, and phantom releases in both layouts with their DICOM headers; bad input fails
naming the file and line."""

import gzip
import shutil

import numpy as np
import pytest

from cxr_tf.core import cards
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.datasets.siim_acr import phantom
from cxr_tf.datasets.siim_acr import source as src
from cxr_tf.imaging import masks as rle
from cxr_tf.sources import manifest

CARD = cards.dataset_card("siim_acr")
REAL = "siim-pneumothorax-train-rle.csv.gz"


@pytest.fixture(scope="module")
def real(shared_dir, tmp_path_factory):
    """The real label file under the release's own name in a folder without DICOMs, and its load."""
    root = tmp_path_factory.mktemp("siim_real")
    (root / "train-rle.csv.gz").symlink_to(shared_dir / "labels" / REAL)
    return root, src.load(root)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Small phantom releases from one seed: stage 1, stage 2, and stage 1 in Kaggle's standard RLE."""
    root = tmp_path_factory.mktemp("siim_phantom")
    kw = dict(n_images=40, n_patients=16, size=64, seed=7, workers=1)
    out = {}
    for name, extra in (("stage1", {}), ("stage2", {"stage": 2}), ("absolute", {"rle": "absolute"})):
        out[name] = root / name
        out[f"{name}_info"] = phantom.write_dataset(out[name], **kw, **extra)
    return out


def _labels(root, lines, header="ImageId, EncodedPixels", name="train-rle.csv"):
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("\n".join([header, *lines]) + "\n")
    return root


def test_real_file_counts_with_the_images_absent(real):
    root, d = real
    assert d.release_counts == {"images": 12047, "rows": 12954, "positive_images": 2669, "negative_images": 9378,
                                "masks": 3576, "dicoms_found": 0, "unlisted_dicoms": 0}
    assert {k: d.release_counts[k] for k in CARD["expected"]} == CARD["expected"]
    frame = manifest.validate(d.manifest, d.findings, where=root)
    assert d.findings == ("Pneumothorax",) and len(frame) == 12047 and frame["image_id"].is_unique
    assert int((frame["Pneumothorax"] == 1).sum()) == 2669 and set(frame["Pneumothorax"]) == {0.0, 1.0}
    assert sorted(d.missing) == sorted(frame["image_id"]) and (frame["patient"] == frame["image_id"]).all()
    assert frame["path"].str.fullmatch(r"dicom-images-train/1\.2\.276\.0\.7230010\.3\.1\.4\.8323329\.[\d.]+\.dcm").all()
    per_image = frame.loc[frame["n_masks"] > 0, "n_masks"].value_counts().to_dict()
    assert per_image == {1: 2045, 2: 447, 3: 112, 4: 40, 5: 18, 6: 3, 7: 1, 8: 2, 10: 1}
    assert ((frame["n_masks"] > 0) == (frame["Pneumothorax"] == 1)).all()
    assert d.files["layout"] == "stage1 (train-rle.csv.gz)" and d.files["rle"] == "relative"
    assert d.bbox_frame is None and len(d.boxes) == len(d.masks) == 3576
    assert set(d.masks["width"]) == {1024} and set(d.masks["height"]) == {1024}
    b = d.boxes
    assert (b[["x", "y"]] >= 0).all().all() and (b["x"] + b["w"] <= 1024).all() and (b["y"] + b["h"] <= 1024).all()
    assert set(d.manifest["split"]) == {"train", "val", "test"}


def test_real_masks_decode_exactly(real, shared_dir):
    """relative -> canonical -> decode -> encode -> relative gives back every sampled row's string,
    and the boxes are the tight boxes of the decoded masks."""
    _, d = real
    with gzip.open(shared_dir / "labels" / REAL, "rt") as fh:
        rows = [line.rstrip("\n").split(",") for line in fh][1:]
    original = [text for _, text in rows if text != "-1"]
    assert list(d.masks["rle"]) == [rle.from_relative(t) for t in original]      # every mask, in file order
    ten = d.masks.index[d.masks["image_id"] == d.manifest.loc[d.manifest["n_masks"] == 10, "image_id"].iloc[0]]
    for i in sorted(set(range(0, len(original), 173)) | set(ten)):
        m = d.masks.iloc[i]
        mask = rle.decode(m["rle"], m["width"], m["height"])
        assert rle.to_relative(rle.encode(mask)) == original[i]
        assert rle.box(mask) == tuple(d.boxes.iloc[i][["x", "y", "w", "h"]])
    union = rle.union(d.masks.loc[ten, "rle"], 1024, 1024)
    assert 0 < rle.area(union) < sum(rle.area(t) for t in d.masks.loc[ten, "rle"])   # its ten masks overlap


def _overlapping(masks) -> tuple[int, int]:
    """(images with several masks, those whose masks overlap), from the runs (no decoding)."""
    multi = over = 0
    for _, group in masks.groupby("image_id"):
        if len(group) > 1:
            pairs = np.concatenate([np.array(t.split(), dtype=np.int64).reshape(-1, 2) for t in group["rle"]])
            pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
            multi += 1
            over += bool((pairs[1:, 0] < np.maximum.accumulate(pairs[:, 0] + pairs[:, 1])[:-1]).any())
    return multi, over


def test_real_masks_of_one_image_may_overlap(real):
    """Several rows of one image are separate masks that often overlap: the image's pneumothorax is
    their union, and a mask row is never merged into another."""
    assert _overlapping(real[1].masks) == (624, 183)


def test_stats_reads_the_real_file(real):
    from cxr_tf.studies.stats import from_source, tables

    frame, findings, _, _ = from_source("siim_acr", real[0])
    counts = tables(frame, findings)["counts"].set_index("split")
    assert counts.loc["all", "images"] == 12047 and counts.loc["all", "positive_findings"] == 2669
    assert counts.loc["all", "images_on_disk"] == 0 and counts["images"].drop("all").sum() == 12047


@pytest.mark.parametrize("name", ["stage1", "stage2", "absolute"])
def test_phantom_releases_read_back(trees, name):
    root, info = trees[name], trees[f"{name}_info"]
    d = src.load(root)
    frame = manifest.validate(d.manifest, d.findings, where=root)
    assert d.missing == [] and all((root / p).is_file() for p in frame["path"])
    assert {k: d.release_counts[k] for k in ("images", "rows", "positive_images", "masks", "unlisted_dicoms")} == \
           {k: info[k] for k in ("images", "rows", "positive_images", "masks", "unlisted_dicoms")}
    assert d.release_counts["unlisted_dicoms"] > 0 and frame["patient"].nunique() < len(frame)
    assert d.files["rle"] == ("absolute" if name == "absolute" else "relative")
    assert d.files["layout"].startswith("stage2" if name == "stage2" else "stage1")
    assert set(d.masks["width"]) == set(d.masks["height"]) == {64}          # the DICOM's size, not 1024
    assert set(frame["view"]) <= {"PA", "AP"} and set(frame["sex"]) <= {"M", "F"} and frame["age"].between(18, 95).all()
    assert frame["study"].str.startswith("1.2.276.0.7230010.3.1.2.").all()
    assert frame["patient"].str.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}").all()
    for m, b in zip(d.masks.itertuples(), d.boxes.itertuples()):
        mask = rle.decode(m.rle, m.width, m.height)
        assert mask.any() and rle.box(mask) == (b.x, b.y, b.w, b.h)
    multi, over = _overlapping(d.masks)
    assert multi > 0 and over == multi                                  # two-mask positives overlap in a band


def test_dicom_headers_fill_the_manifest(trees):
    import pydicom

    root = trees["stage1"]
    row = src.load(root).manifest.iloc[0]
    ds = pydicom.dcmread(root / row["path"], stop_before_pixels=True)
    assert ds.SOPInstanceUID == row["image_id"] and ds.PatientID == row["patient"] == str(ds.PatientName)
    assert ds.StudyInstanceUID == row["study"] and ds.ViewPosition == row["view"] and ds.PatientSex == row["sex"]
    assert float(ds.PatientAge) == row["age"] and (ds.Rows, ds.Columns) == (64, 64)
    assert ds.file_meta.TransferSyntaxUID.name.startswith("JPEG Baseline") and ds.Modality == "CR"
    parts = row["path"].split("/")
    assert parts[0] == "dicom-images-train" and parts[1:] == [ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                             f"{row['image_id']}.dcm"]


def test_label_file_formats_match_the_release(trees, shared_dir):
    with gzip.open(shared_dir / "labels" / REAL, "rt") as fh:
        real_header = fh.readline()
    assert (trees["stage1"] / "train-rle.csv").read_text().splitlines()[0] + "\n" == real_header
    assert (trees["stage2"] / "stage_2_train.csv").read_text().splitlines()[0] == "ImageId,EncodedPixels"
    assert not (trees["stage1"] / "stage_2_images").exists()
    assert any((trees["stage2"] / "stage_2_images").glob("ID_*.dcm"))
    stage1 = set(src.load(trees["stage1"]).manifest["image_id"])
    stage2 = src.load(trees["stage2"]).manifest
    assert stage1 < set(stage2["image_id"])                            # stage 2 also labels stage 1's test images
    assert set(stage2.loc[~stage2["image_id"].isin(stage1), "path"].str.split("/").str[0]) == {"dicom-images-test"}


def test_same_masks_in_either_rle_flavour(trees):
    a, b = src.load(trees["stage1"]), src.load(trees["absolute"])
    assert a.masks.equals(b.masks) and a.boxes.equals(b.boxes)
    assert a.manifest.drop(columns="path").equals(b.manifest.drop(columns="path"))
    with pytest.raises(CxrDataError, match=r"train-rle.csv: line \d+: the mask read as relative"):
        src.load(trees["absolute"], rle="relative")


def test_missing_dicoms_are_listed_and_framed_by_the_card(trees, tmp_path):
    root = tmp_path / "partial"
    shutil.copytree(trees["stage1"], root)
    d = src.load(root)
    gone = d.manifest[d.manifest["Pneumothorax"] == 1].iloc[0]
    (root / gone["path"]).unlink()
    d = src.load(root)
    row = d.manifest.set_index("image_id").loc[gone["image_id"]]
    assert d.missing == [gone["image_id"]] and row["patient"] == row["study"] == gone["image_id"]
    assert row["path"] == f"dicom-images-train/{gone['image_id']}.dcm" and row["view"] == "" and np.isnan(row["age"])
    assert set(d.masks.loc[d.masks["image_id"] == gone["image_id"], "width"]) == {1024}


def test_splits_official_fixed_random_seeded_patient_level(trees):
    root = trees["stage2"]
    official = src.load(root, seed=1).manifest
    assert official.equals(src.load(root, seed=99).manifest)
    a, b = (src.load(root, split="random", seed=s).manifest for s in (1, 2))
    assert not a["split"].equals(b["split"])
    for frame in (official, a, b):
        assert frame.groupby("patient")["split"].nunique().max() == 1
    by_image = src.load(root, patient="image").manifest
    assert (by_image["patient"] == by_image["image_id"]).all()


def test_layout_detection_and_options(trees, tmp_path):
    root = tmp_path / "both"
    shutil.copytree(trees["stage2"], root)
    shutil.copy(trees["stage1"] / "train-rle.csv", root / "train-rle.csv")
    assert src.load(root).files["layout"] == "stage2 (stage_2_train.csv)"
    assert src.load(root, release="stage1").files["layout"] == "stage1 (train-rle.csv)"
    mirror = root / "siim-acr-pneumothorax-segmentation"
    mirror.mkdir()
    (root / "stage_2_train.csv").rename(mirror / "stage_2_train.csv")
    assert src.load(root, release="stage2").files["labels"] == str(mirror / "stage_2_train.csv")
    for key, value in (("release", "stage3"), ("rle", "zigzag"), ("patient", "uuid")):
        with pytest.raises(CxrConfigError, match=key):
            src.load(root, **{key: value})


def test_leading_spaces_and_the_stage2_header(tmp_path):
    d = src.load(_labels(tmp_path / "a", ["1.2.3, -1", "1.2.4, 5 2 1 3", "1.2.4, 200 1"]))
    m = d.manifest.set_index("image_id")
    assert m.loc["1.2.3", "Pneumothorax"] == 0 and m.loc["1.2.4", "Pneumothorax"] == 1
    assert m.loc["1.2.4", "n_masks"] == 2
    assert list(d.masks["rle"]) == ["5 2 8 3", "200 1"] and tuple(d.boxes.iloc[0][["x", "y", "w", "h"]]) == (0, 5, 1, 6)
    d = src.load(_labels(tmp_path / "b", ["1.2.3,-1"], header="ImageId,EncodedPixels", name="stage_2_train.csv"))
    assert d.files["layout"] == "stage2 (stage_2_train.csv)" and d.masks.empty and d.boxes.empty


@pytest.mark.parametrize("lines,header,match", [
    (["1.2.3,-1", "1.2.4,maybe"], "ImageId, EncodedPixels", r"line 3: EncodedPixels is 'maybe'"),
    (["1.2.3,"], "ImageId, EncodedPixels", r"line 2: EncodedPixels is ''"),
    (["1.2.3,-1", "1.2.4,5 2 7"], "ImageId, EncodedPixels", r"line 3: the mask .* an odd number of values"),
    (["1.2.4,1048570 10"], "ImageId, EncodedPixels", r"line 2: the mask .* outside a 1024x1024 image"),
    (["1.2.4,5 2 1 3", "1.2.4,-1"], "ImageId, EncodedPixels", r"line 3: 1.2.4 is -1 .* mask on another line"),
    (["1.2.3,-1,extra"], "ImageId, EncodedPixels", r"line 2 has 3 fields, the header 2"),
    (["1.2.3,-1"], "ImageId, Pixels", r"missing column\(s\) \['EncodedPixels'\]"),
])
def test_bad_input_names_the_file_and_line(tmp_path, lines, header, match):
    with pytest.raises(CxrDataError, match=r"train-rle.csv: " + match):
        src.load(_labels(tmp_path / "bad", lines, header=header))


def test_no_label_file_is_a_clear_error(tmp_path):
    with pytest.raises(CxrDataError, match="no label file: expected stage_2_train.csv or train-rle.csv"):
        src.load(tmp_path)
    with pytest.raises(CxrDataError, match="data directory not found"):
        src.load(tmp_path / "nope")
