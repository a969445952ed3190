"""MIMIC-CXR-JPG and MIMIC-CXR (DICOM) on phantom releases in the real layouts: label sources and
their provenance, radiologist test labels, view filters, study subsets, splits, reports kept for the
labeler, and the DICOM release read with the MIMIC-CXR-JPG recipe matching the JPG release."""

import gzip
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from cxr_tf.core import cards
from cxr_tf.sources import manifest
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.datasets.mimic import source as mimic

FINDINGS = cards.dataset_card("mimic")["findings"]
LAYOUT = cards.dataset_card("mimic")["layout"]


def _csv(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_jpg_release_files_in_the_real_layout(mimic_dirs, shared_dir):
    root = mimic_dirs["jpg"]
    formats = shared_dir / "formats"
    for name, header in (("metadata", "header_mimic-cxr-2.0.0-metadata.csv"),
                         ("split", "header_mimic-cxr-2.0.0-split.csv")):
        with gzip.open(root / f"{LAYOUT[name]}.gz", "rt") as fh:
            assert fh.readline().strip() == (formats / header).read_text().strip()
    for kind in ("chexpert", "negbio"):
        with gzip.open(root / f"{LAYOUT['labels'][kind]}.gz", "rt") as fh:
            header = (formats / "header_mimic-cxr-2.0.0-chexpert_and_negbio.csv").read_text().strip()
            assert fh.readline().strip() == header


def test_ids_views_and_studies_are_realistic(mimic_dirs):
    meta = _csv(mimic_dirs["jpg"] / f"{LAYOUT['metadata']}.gz")
    assert meta["subject_id"].str.fullmatch(LAYOUT["subject_pattern"][1:-1]).all()
    assert meta["study_id"].str.fullmatch(LAYOUT["study_pattern"][1:-1]).all()
    assert meta["dicom_id"].str.fullmatch(LAYOUT["dicom_id_pattern"][1:-1]).all()
    assert meta.groupby("subject_id")["study_id"].nunique().max() > 1         # several studies per patient
    assert {"PA", "AP", "LATERAL", ""} <= set(meta["ViewPosition"])
    for row in meta.itertuples():
        path = mimic_dirs["jpg"] / mimic.relative_path(row.subject_id, row.study_id, row.dicom_id)
        assert path.is_file() and path.parts[-3] == f"p{row.subject_id}" and path.parts[-4] == f"p{row.subject_id[:2]}"
    test = _csv(mimic_dirs["jpg"] / LAYOUT["test_labels"])
    assert "Airspace Opacity" in test.columns and "Lung Opacity" not in test.columns and "subject_id" not in test


def test_labels_are_per_study_with_their_source(mimic_dirs):
    data = mimic.load(mimic_dirs["jpg"], views="all")
    frame = data.manifest
    assert (frame.groupby("study")[FINDINGS].nunique(dropna=False) <= 1).all().all()
    labels = _csv(mimic_dirs["jpg"] / f"{LAYOUT['labels']['chexpert']}.gz").set_index("study_id")
    row = frame.iloc[0]
    for f in FINDINGS:
        cell = labels.loc[row["study"], f]
        assert (np.isnan(row[f]) and cell == "") or row[f] == float(cell)
    assert set(frame["label_source"]) == {"chexpert"} and set(frame["label_method"]) == {"nlp"}
    values = frame[FINDINGS].to_numpy(np.float64)
    assert {1.0, 0.0, -1.0} <= set(np.unique(values[np.isfinite(values)])) and np.isnan(values).any()
    negbio = mimic.load(mimic_dirs["jpg"], views="all", labels="negbio").manifest
    assert set(negbio["label_source"]) == {"negbio"}
    assert not negbio[FINDINGS].equals(frame[FINDINGS])          # NegBio misses some hedges


def test_labels_from_a_file(mimic_dirs, tmp_path):
    labels = _csv(mimic_dirs["jpg"] / f"{LAYOUT['labels']['chexpert']}.gz")
    keep = labels.iloc[: len(labels) // 2]
    path = tmp_path / "labeled_by_me.csv"
    keep.to_csv(path, index=False)
    data = mimic.load(mimic_dirs["jpg"], labels=str(path), views="all")
    assert set(data.manifest["label_source"]) == {"labeled_by_me.csv"}
    assert set(data.manifest["study"]) <= set(keep["study_id"])
    assert data.excluded["study without a label row"] > 0              # counted, not silently dropped
    keep.drop(columns=["Edema"]).to_csv(path, index=False)
    with pytest.raises(CxrDataError, match=r"labeled_by_me.csv.*Edema"):
        mimic.load(mimic_dirs["jpg"], labels=str(path))
    bad = keep.copy()
    bad.loc[bad.index[2], "Edema"] = "maybe"
    bad.to_csv(path, index=False)
    with pytest.raises(CxrDataError, match=r"line 4: Edema is 'maybe'"):
        mimic.load(mimic_dirs["jpg"], labels=str(path))
    with pytest.raises(CxrDataError, match="label file not found"):
        mimic.load(mimic_dirs["jpg"], labels=str(tmp_path / "nope.csv"))


def test_radiologist_test_labels(mimic_dirs):
    nlp = mimic.load(mimic_dirs["jpg"], views="all").manifest
    rad = mimic.load(mimic_dirs["jpg"], views="all", test_labels="radiologist")
    frame = rad.manifest
    test = frame["split"] == "test"
    assert test.any() and set(frame.loc[test, "label_method"]) == {"radiologist"}
    assert set(frame.loc[~test, "label_method"]) == {"nlp"}
    assert rad.files["test_split_labels"] == "radiologist"
    table = _csv(mimic_dirs["jpg"] / LAYOUT["test_labels"]).set_index("study_id")
    row = frame[test].iloc[0]
    assert row["Lung Opacity"] == float(table.loc[row["study"], "Airspace Opacity"])
    assert set(np.unique(frame.loc[test, FINDINGS].to_numpy())) <= {0.0, 1.0}
    assert not frame.loc[test, FINDINGS].reset_index(drop=True).equals(
        nlp.loc[nlp["split"] == "test", FINDINGS].reset_index(drop=True))
    with pytest.raises(CxrConfigError, match="official"):
        mimic.load(mimic_dirs["jpg"], split="random", test_labels="radiologist")


def test_views_are_filterable_and_counted(mimic_dirs):
    everything = mimic.load(mimic_dirs["jpg"], views="all")
    frontal = mimic.load(mimic_dirs["jpg"])
    assert set(frontal.manifest["view"]) == {"PA", "AP"}
    assert frontal.excluded["views=frontal"] == len(everything.manifest) - len(frontal.manifest)
    lateral = mimic.load(mimic_dirs["jpg"], views="lateral").manifest
    assert set(lateral["view"]) <= {"LATERAL", "LL"} and len(lateral)
    blank = mimic.load(mimic_dirs["jpg"], views="PA,blank").manifest
    assert set(blank["view"]) == {"PA", ""}
    with pytest.raises(CxrConfigError, match="views"):
        mimic.load(mimic_dirs["jpg"], views="sideways")


def test_limit_studies_and_random_split(mimic_dirs):
    data = mimic.load(mimic_dirs["jpg"], views="all", split="random", limit_studies=10, seed=0,
                      fractions=[0.8, 0.1, 0.1])
    assert data.manifest["study"].nunique() == 10 and data.excluded["limit_studies=10"] > 0
    full = mimic.load(mimic_dirs["jpg"], views="all").manifest
    sizes = full.groupby("study").size()
    kept = data.manifest.groupby("study").size()
    assert (kept == sizes[kept.index]).all()                                               # whole studies
    manifest.assert_patient_disjoint(data.manifest)


def test_official_split_follows_the_split_file(mimic_dirs):
    frame = mimic.load(mimic_dirs["jpg"], views="all").manifest
    split = _csv(mimic_dirs["jpg"] / f"{LAYOUT['split']}.gz").set_index("dicom_id")["split"]
    want = frame["image_id"].map(split).map({"train": "train", "validate": "val", "test": "test"})
    assert (want == frame["split"]).all() and {"train", "val", "test"} == set(frame["split"])


def test_dicom_release_reads_as_the_jpg_release(mimic_dirs):
    jpg = mimic.load(mimic_dirs["jpg"], views="all")
    dcm = mimic.load(mimic_dirs["dicom"], views="all", jpg_dir=mimic_dirs["jpg"])
    assert dcm.files["release"] == "MIMIC-CXR (DICOM)" and jpg.files["release"] == "MIMIC-CXR-JPG"
    assert dcm.manifest["path"].str.endswith(".dcm").all()
    pd.testing.assert_frame_equal(jpg.manifest.drop(columns="path"), dcm.manifest.drop(columns="path"))
    assert (jpg.manifest["path"].str[:-4] == dcm.manifest["path"].str[:-4]).all()


def test_dicom_release_keeps_the_reports(mimic_dirs, tmp_path):
    data = mimic.load(mimic_dirs["dicom"], views="all", jpg_dir=mimic_dirs["jpg"])
    reports = data.tables["reports"]
    assert set(reports["study"]) == set(data.manifest["study"]) and (reports["report"] != "").all()
    text = reports["report"].iloc[0]
    for header in ("FINAL REPORT", "EXAMINATION:", "INDICATION:", "TECHNIQUE:", "COMPARISON:", "FINDINGS:",
                   "IMPRESSION:"):
        assert header in text
    assert "___" in text and max(len(line) for line in text.splitlines()) <= 79
    assert reports["report"].str.contains(r"^ ?(?:No |There is no )", flags=re.M).any()           # negations
    assert reports["report"].str.contains("cannot be excluded|Possible|may represent|Questionable|may be").any()
    # the unpacked layout reads the same
    unpacked = tmp_path / "unpacked"
    shutil.copytree(mimic_dirs["dicom"], unpacked)
    import zipfile
    with zipfile.ZipFile(unpacked / LAYOUT["reports_zip"]) as zf:
        zf.extractall(unpacked)
    (unpacked / LAYOUT["reports_zip"]).unlink()
    again = mimic.load(unpacked, views="all", jpg_dir=mimic_dirs["jpg"]).tables["reports"]
    pd.testing.assert_frame_equal(reports, again)


def test_dicom_release_without_labels_says_where_to_find_them(mimic_dirs, tmp_path):
    with pytest.raises(CxrDataError, match="jpg_dir"):
        mimic.load(mimic_dirs["dicom"])
    labels = tmp_path / "labels.csv"
    shutil.copy(mimic_dirs["jpg"] / f"{LAYOUT['labels']['chexpert']}.gz", tmp_path / "labels.csv.gz")
    _csv(tmp_path / "labels.csv.gz").to_csv(labels, index=False)
    with pytest.raises(CxrDataError, match="split random"):
        mimic.load(mimic_dirs["dicom"], labels=str(labels))
    # views come from the DICOM headers when no metadata CSV is at hand
    data = mimic.load(mimic_dirs["dicom"], labels=str(labels), split="random", views="all")
    meta = _csv(mimic_dirs["jpg"] / f"{LAYOUT['metadata']}.gz").set_index("dicom_id")["ViewPosition"]
    assert (data.manifest["view"] == data.manifest["image_id"].map(meta)).all()


def test_options_are_checked(mimic_dirs):
    with pytest.raises(CxrConfigError, match="recipe"):
        mimic.load(mimic_dirs["jpg"], recipe="mimic-jpg")          # the JPG release is already converted
    with pytest.raises(CxrConfigError, match="recipe"):
        mimic.load(mimic_dirs["dicom"], jpg_dir=mimic_dirs["jpg"], recipe="sepia")
    with pytest.raises(CxrDataError, match="neither"):
        mimic.load(mimic_dirs["jpg"] / "files")


def test_prepare_from_dicom_with_the_jpg_recipe_matches_the_jpg_release(mimic_dirs, tmp_path):
    from cxr_tf.records.prepare import prepare
    from cxr_tf.records.reader import RecordsDir

    size = 64
    prepare("mimic", mimic_dirs["jpg"], tmp_path / "jpg", size=size, workers=1, options={"views": "all"})
    prepare("mimic", mimic_dirs["dicom"], tmp_path / "dcm", size=size, workers=1,
            options={"views": "all", "jpg_dir": str(mimic_dirs["jpg"]), "recipe": "mimic-jpg"})
    a, b = RecordsDir(tmp_path / "jpg"), RecordsDir(tmp_path / "dcm")
    pd.testing.assert_frame_equal(a.manifest.drop(columns="path"), b.manifest.drop(columns="path"))
    assert b.summary["decode"] == {"recipe": "mimic-jpg"} and "reports" in b.summary["tables"]
    reports = pd.read_csv(tmp_path / "dcm" / "reports.csv", dtype=str)
    assert set(reports["study"]) == set(b.manifest["study"])
    from cxr_tf.imaging import decode_file
    diffs = []
    for row in a.manifest.itertuples():
        x = decode_file(mimic_dirs["jpg"] / row.path).astype(int)
        y = decode_file(mimic_dirs["dicom"] / (row.path[:-4] + ".dcm"), recipe="mimic-jpg").astype(int)
        assert x.shape == y.shape
        diffs.append(np.abs(x - y).mean())
    assert max(diffs) < 3.0                                     # JPEG quality 95 tolerance (mean abs, 0-255)


def test_the_2_0_0_release_has_no_radiologist_labels(mimic_dirs, tmp_path):
    old = tmp_path / "mimic-cxr-jpg-2.0.0"
    shutil.copytree(mimic_dirs["jpg"], old)
    (old / LAYOUT["test_labels"]).unlink()
    (old / "IMAGE_FILENAMES").unlink()
    pd.testing.assert_frame_equal(mimic.load(old).manifest, mimic.load(mimic_dirs["jpg"]).manifest)
    with pytest.raises(CxrDataError, match="2.1.0"):
        mimic.load(old, test_labels="radiologist")
    for name in (LAYOUT["metadata"], LAYOUT["split"]):      # unzipped CSVs read the same
        with gzip.open(old / f"{name}.gz") as src:
            (old / name).write_bytes(src.read())
        (old / f"{name}.gz").unlink()
    pd.testing.assert_frame_equal(mimic.load(old).manifest, mimic.load(mimic_dirs["jpg"]).manifest)


def test_a_rerun_without_reports_drops_the_old_side_table(mimic_dirs, tmp_path):
    from cxr_tf.records.prepare import prepare

    out = tmp_path / "rec"
    prepare("mimic", mimic_dirs["dicom"], out, size=32, workers=1, options={"jpg_dir": str(mimic_dirs["jpg"])})
    assert (out / "reports.csv").is_file()
    prepare("mimic", mimic_dirs["jpg"], out, size=32, workers=1)
    assert not (out / "reports.csv").exists()
