"""The OpenI source reads the real layout: the real development half of the report XMLs
(``../shared``, images absent) with its exact counts, the DICOM header dump with its empty column
name and its one missing image, reports that are empty or lack FINDINGS, labels that are exactly
what ``cxr-tf label`` gives the same text; the phantom release (PNG and DICOM) round trip; and bad
input that names the file."""

import csv
import tarfile

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.datasets.openi import phantom, source as src
from cxr_tf.sources import manifest

DEV_IMAGES = 3737
REAL_VIEWS = {"PA": 1774, "": 1317, "LL": 370, "AP": 212, "LATERAL": 50, "RL": 14}


@pytest.fixture(scope="module")
def real(shared_dir, tmp_path_factory):
    """The development half as a user's folder holds it: ecgen-radiology/ and the header dump
    under their release names (symlinks), no images; loaded once."""
    xml = shared_dir / "reports" / "openi_dev" / "ecgen-radiology"
    dump = shared_dir / "labels" / "nlmcxr_dicom_metadata.csv.gz"
    if not xml.is_dir() or not dump.is_file():
        pytest.skip("the OpenI development reports or the DICOM header dump are not in ../shared")
    root = tmp_path_factory.mktemp("openi_real")
    (root / "ecgen-radiology").symlink_to(xml, target_is_directory=True)
    (root / "nlmcxr_dicom_metadata.csv.gz").symlink_to(dump)
    return root, src.load(root), shared_dir / "reports" / "openi_dev"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A phantom PNG release and the same plan as the DICOM release without the header dump."""
    root = tmp_path_factory.mktemp("openi_phantom")
    kw = dict(n_images=40, n_patients=18, size=40, seed=3)
    phantom.write_dataset(root / "png", **kw)
    phantom.write_dataset(root / "dcm", dicom=True, metadata=False, **kw)
    return root


def test_real_development_half_counts_with_images_absent(real):
    root, d, _ = real
    m = d.manifest
    assert d.release_counts == {"reports": 1920, "images": DEV_IMAGES, "reports_without_images": 0,
                                "reports_without_text": 13, "images_in_metadata": DEV_IMAGES - 1}
    assert len(m) == DEV_IMAGES and sorted(d.missing) == sorted(m["image_id"]) and d.excluded == {}
    assert m["patient"].nunique() == m["study"].nunique() == 1920 and (m["patient"] == m["study"]).all()
    assert m["view"].value_counts().to_dict() == REAL_VIEWS
    assert m["photometric"].value_counts().to_dict() == {"MONOCHROME2": 1953, "MONOCHROME1": 1783, "": 1}
    lost = m.set_index("image_id").loc["CXR1000_IM-0003-1001"]       # the image the header dump lacks
    assert lost["view"] == "" and lost["path"] == "NLMCXR_png/CXR1000_IM-0003-1001.png"
    cxr10 = m[m["study"] == "CXR10"]
    assert list(cxr10["image_id"]) == ["CXR10_IM-0002-1001", "CXR10_IM-0002-2001"]
    assert set(cxr10["mesh_major"]) == {"Calcified Granuloma/lung/upper lobe/right"}
    assert set(cxr10["mesh_automatic"]) == {"calcified granuloma"}
    assert set(m["label_source"]) == {"labeler:chestxray14"} and set(m["report_path"]) >= {"ecgen-radiology/10.xml"}
    manifest.validate(m, d.findings)
    assert {"train", "val", "test"} == set(m["split"])


def test_real_reports_are_the_labelers_input_and_labels_are_cxr_tf_labels(real):
    from cxr_tf.label import label_reports

    _, d, folder = real
    names = [r[0] for r in csv.reader(open(folder / "gold.csv"))][1:]
    texts = [r[0] if r else "" for r in csv.reader(open(folder / "reports.csv", encoding="utf-8-sig", newline=""))]
    reports = d.tables["reports"].set_index("study")
    assert len(reports) == 1920 and (reports["images"] >= 1).all()
    assert list(reports.loc[names, "report"].fillna("")) == texts         # FINDINGS: ... IMPRESSION: ..., empty kept
    assert (reports.loc[names, "report"] == "").sum() == 13
    assert (reports["findings"] == "").sum() == 246 and (reports["impression"] == "").sum() == 16
    want = label_reports(texts, "chestxray14")[list(d.findings)].set_axis(names)
    got = d.manifest.drop_duplicates("study").set_index("study").loc[names, list(d.findings)]
    np.testing.assert_array_equal(got.to_numpy(np.float32), want.to_numpy(np.float32))
    assert set(np.unique(got.to_numpy())) == {-1.0, 0.0, 1.0}


def test_real_header_dump_has_an_unnamed_column_and_both_photometrics(shared_dir):
    path = shared_dir / "labels" / "nlmcxr_dicom_metadata.csv.gz"
    if not path.is_file():
        pytest.skip("the DICOM header dump is not in ../shared")
    with open(path, "rb") as fh:
        import gzip
        header = next(csv.reader([gzip.decompress(fh.read()).decode().split("\n", 1)[0]]))
    assert len(header) == 176 and header.count("") == 1 and header[:1] == ["imageid"]
    assert ",".join(header) == phantom.METADATA_HEADER                         # the phantom writes the real header
    meta = src.read_metadata(path)
    assert len(meta) == 7469 and meta["photometric"].value_counts().to_dict() == {"MONOCHROME2": 3885,
                                                                                  "MONOCHROME1": 3584}


def test_real_stats_report_the_counts(real, tmp_path):
    from cxr_tf.cli import main

    root, _, _ = real
    res = CliRunner().invoke(main, ["stats", "--dataset", "openi", "--data-dir", str(root), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "3,737 images (0 on disk, 3,737 absent), 1,920 patients, 1,920 studies" in res.output
    assert "patients shared between splits: 0" in res.output


def test_phantom_png_release_round_trip(tree):
    root = tree / "png"
    for split in ("official", "random"):
        d = src.load(root, split=split, seed=1)
        m = manifest.validate(d.manifest, d.findings, where=root)
        assert d.missing == [] and all((root / p).is_file() for p in m["path"]) and {"train", "val"} <= set(m["split"])
        assert m.groupby("patient")["split"].nunique().max() == 1
    assert d.files["release"] == "Open-i NLMCXR_png" and d.files["views"] == "metadata table"
    assert d.release_counts["images"] == len(m) == 40 and d.release_counts["images_in_metadata"] == 39
    assert m.iloc[0]["view"] == ""                      # the phantom dump leaves the first image out, as the real one
    reports = {r.number: r for r in phantom.plan(40, 18, 3)}
    for study, row in m.drop_duplicates("study").set_index("study").iterrows():
        r = reports[int(study[3:])]
        want = [1.0 if f in r.stated else -1.0 if f in r.hedged else 0.0 for f in d.findings]
        assert list(row[list(d.findings)]) == want, study       # the labeler reads back what was drawn
    assert d.release_counts["reports_without_text"] == 1 and (d.tables["reports"]["findings"] == "").any()
    official = src.load(root).manifest["split"]               # the card's fixed split: a seed does not move it
    pd.testing.assert_series_equal(official, src.load(root, seed=7).manifest["split"])
    assert not src.load(root, split="random", seed=7).manifest["split"].equals(official)


def test_phantom_dicom_release_views_from_the_headers(tree):
    png, dcm = src.load(tree / "png").manifest, src.load(tree / "dcm")
    m = dcm.manifest
    assert dcm.files["release"] == "Open-i NLMCXR_dcm" and dcm.files["views"] == "DICOM headers"
    assert m["path"].str.match(r"^NLMCXR_dcm/\d+_IM-\d{4}-\d+\.dcm$").all() and dcm.missing == []
    assert list(m["image_id"]) == list(png["image_id"]) and list(m["split"]) == list(png["split"])
    assert (m["view"].iloc[1:] == png["view"].iloc[1:]).all() and m["view"].iloc[0] in ("PA", "AP")
    assert (m["photometric"] == "").all()                    # only the dump gives it


def test_reports_archive_and_flat_pngs_read_like_the_folders(tree, tmp_path):
    base = src.load(tree / "png").manifest
    root = tmp_path / "copy"
    root.mkdir()
    with tarfile.open(root / "NLMCXR_reports.tgz", "w:gz") as tar:      # not unpacked
        tar.add(tree / "png" / "ecgen-radiology", arcname="ecgen-radiology")
    for p in (tree / "png" / "NLMCXR_png").iterdir():                     # unpacked straight into --data-dir
        (root / p.name).symlink_to(p)
    (root / "nlmcxr_dicom_metadata.csv.gz").symlink_to(tree / "png" / "nlmcxr_dicom_metadata.csv.gz")
    d = src.load(root)
    assert d.missing == [] and d.files["reports"].endswith("NLMCXR_reports.tgz")
    assert list(d.manifest["path"]) == [p.split("/", 1)[1] for p in base["path"]]
    pd.testing.assert_frame_equal(d.manifest.drop(columns="path"), base.drop(columns="path"))


def test_options_vocabulary_uncertain_views(tree):
    root = tree / "png"
    cx = src.load(root, vocabulary="chexpert")
    assert list(cx.findings) == src.card()["findings_chexpert"]
    assert set(cx.manifest["label_source"]) == {"labeler:chexpert"}
    assert cx.manifest[list(cx.findings)].isna().any().any()             # chexpert keeps "not mentioned"
    negative = src.load(root, uncertain="negative").manifest[list(src.card()["findings"])]
    assert (src.load(root).manifest[negative.columns] == -1).any().any() and not (negative == -1).any().any()
    frontal = src.load(root, views="frontal")
    assert set(frontal.manifest["view"]) <= {"PA", "AP"}
    assert frontal.excluded == {"views=frontal": 40 - len(frontal.manifest)} and len(frontal.manifest) < 40
    with pytest.raises(CxrConfigError, match="vocabulary"):
        src.load(root, vocabulary="radlex")
    with pytest.raises(CxrConfigError, match="uncertain"):
        src.load(root, vocabulary="chexpert", uncertain="negative")
    with pytest.raises(CxrConfigError, match="views"):
        src.load(root, views="oblique")
    with pytest.raises(CxrConfigError, match="release"):
        src.load(root, release="jpg")


def test_views_filter_needs_a_view_source(tree, tmp_path):
    root = tmp_path / "no_views"
    root.mkdir()
    (root / "ecgen-radiology").symlink_to(tree / "png" / "ecgen-radiology", target_is_directory=True)
    d = src.load(root)
    assert set(d.manifest["view"]) == {""} and d.files["views"] == "none (blank)" and len(d.missing) == 40
    with pytest.raises(CxrDataError, match="views=frontal needs each image's view"):
        src.load(root, views="frontal")
    with pytest.raises(CxrDataError, match="metadata file not found"):
        src.load(root, metadata=str(tmp_path / "nope.csv"))


def _report(root, number, images, name=None):
    """One report XML in the release's structure (the phantom writer's), listing ``images``."""
    rep = phantom.Report(number, (), (), (), ("", "", "Heart size normal.", "No acute disease."),
                         tuple((i, "PA", False, "MONOCHROME2") for i in images), "20120101", "19500101")
    path = root / "ecgen-radiology" / (name or f"{number}.xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(phantom.report_xml(rep))
    return path


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(CxrDataError, match="no ecgen-radiology/"):
        src.load(tmp_path)
    (tmp_path / "ecgen-radiology").mkdir()
    with pytest.raises(CxrDataError, match="no report XMLs"):
        src.load(tmp_path)
    bad = tmp_path / "ecgen-radiology" / "1.xml"
    bad.write_text('<?xml version="1.0"?>\n<eCitation>\n  <uId id="CXR1"/>\n  <MeSH>\n</eCitation>\n')
    with pytest.raises(CxrDataError, match=r"1\.xml: line 5: not well-formed XML"):
        src.load(tmp_path)
    bad.write_text("<article/>")
    with pytest.raises(CxrDataError, match=r"1\.xml: not an Open-i report.*expected <eCitation>"):
        src.load(tmp_path)
    bad.unlink()
    _report(tmp_path, 5, ["CXR6_IM-0001-1001"])
    with pytest.raises(CxrDataError, match=r"5\.xml: parentImage id 'CXR6_IM-0001-1001' is not CXR5_IM"):
        src.load(tmp_path)
    _report(tmp_path, 5, ["CXR5_IM-0001-1001", "CXR5_IM-0001-1001"])
    with pytest.raises(CxrDataError, match=r"5\.xml: image CXR5_IM-0001-1001 is also listed by .*5\.xml"):
        src.load(tmp_path)
    _report(tmp_path, 5, ["CXR5_IM-0001-1001", "CXR5_IM-0001-2001"])
    _report(tmp_path, 5, ["CXR5_IM-0001-3001"], name="7.xml")
    with pytest.raises(CxrDataError, match=r"7\.xml: report CXR5 is also .*5\.xml"):
        src.load(tmp_path)
    (tmp_path / "ecgen-radiology" / "7.xml").unlink()
    meta = tmp_path / "nlmcxr_dicom_metadata.csv"
    meta.write_text("imageid,ViewPosition\nCXR5_IM-0001-1001,PA\n")
    with pytest.raises(CxrDataError, match=r"nlmcxr_dicom_metadata\.csv: missing column\(s\) \['View Position'\]"):
        src.load(tmp_path)
    meta.write_text("imageid,View Position\nCXR5_IM-0001-1001,PA\nCXR5_IM-0001-1001,LL\n")
    with pytest.raises(CxrDataError, match=r"CXR5_IM-0001-1001' has more than one row \(line 3\)"):
        src.load(tmp_path)
    meta.write_text("imageid,View Position\nCXR5_IM-0001-1001,PA\n")
    d = src.load(tmp_path)
    assert list(d.manifest["view"]) == ["PA", ""] and d.release_counts["images_in_metadata"] == 1


def test_phantom_is_deterministic(tmp_path):
    a = phantom.write_dataset(tmp_path / "a", n_images=6, n_patients=3, size=32, seed=9)
    b = phantom.write_dataset(tmp_path / "b", n_images=6, n_patients=3, size=32, seed=9)
    assert a == b
    for p in (tmp_path / "a").rglob("*"):
        if p.is_file():
            assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes(), p
    with pytest.raises(CxrConfigError, match="reports"):
        phantom.write_dataset(tmp_path / "c", n_images=2, n_patients=3)
