"""``cxr-tf label`` inputs and outputs: the CheXpert labeler's CSV, a CSV column, a folder of
reports, the MIMIC-CXR reports zip and tree; clear errors; and weak labels flowing into
``prepare mimic --labels FILE``."""

import shutil
import zipfile

import pandas as pd
import pytest
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.core.errors import CxrDataError
from cxr_tf.label import label_file
from cxr_tf.label.io import read_reports


def _invoke(args):
    res = CliRunner().invoke(main, ["label", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res


def test_chexpert_convention_csv(shared_dir, tmp_path):
    out = tmp_path / "labeled.csv"
    res = _invoke([shared_dir / "reports" / "sample_reports.csv", "--out", out])
    assert "labeled 4 reports" in res.output
    got = pd.read_csv(out)
    want = pd.read_csv(shared_dir / "reports" / "labeled_reports.csv")
    assert list(got.columns[: len(want.columns)]) == list(want.columns) and got["labeler"].str.contains("cxr-tf").all()
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)


def test_csv_column_and_folder(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["No pneumothorax.", "Small left effusion."]})
    frame.to_csv(tmp_path / "r.csv", index=False)
    _invoke([tmp_path / "r.csv", "--column", "text", "--out", tmp_path / "o.csv", "--vocabulary", "chestxray14"])
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out["id"]) == ["a", "b"] and list(out["Effusion"]) == [0, 1] and "text" not in out
    assert list(out["Finding Labels"]) == ["No Finding", "Effusion"]
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "one.txt").write_text("IMPRESSION: Cardiomegaly.")
    (folder / "two.txt").write_text("IMPRESSION: No acute process.")
    _invoke([folder, "--out", tmp_path / "f.csv"])
    out = pd.read_csv(tmp_path / "f.csv")
    assert list(out["file"]) == ["one.txt", "two.txt"] and list(out["Cardiomegaly"].fillna(9)) == [1, 9]


def test_clear_errors(tmp_path):
    (tmp_path / "wide.csv").write_text("id,text\n1,No effusion\n")
    with pytest.raises(CxrDataError, match="give --column"):
        read_reports(tmp_path / "wide.csv")
    with pytest.raises(CxrDataError, match="no column 'report'"):
        read_reports(tmp_path / "wide.csv", column="report")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81" * 50)
    with pytest.raises(CxrDataError, match="binary.csv.*UTF-8"):
        read_reports(tmp_path / "binary.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CxrDataError, match="no .txt reports"):
        read_reports(tmp_path / "empty")
    res = CliRunner().invoke(main, ["label", str(tmp_path / "wide.csv"), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "wide.csv" in res.output


def test_mimic_zip_and_tree_then_prepare(mimic_dirs, tmp_path):
    reports = mimic_dirs["dicom"] / "mimic-cxr-reports.zip"
    one = label_file(reports, tmp_path / "zip.csv", workers=1)
    two = label_file(reports, tmp_path / "zip2.csv", workers=2, chunk=7)
    a, b = pd.read_csv(tmp_path / "zip.csv", dtype=str), pd.read_csv(tmp_path / "zip2.csv", dtype=str)
    pd.testing.assert_frame_equal(a, b)                                   # workers keep the order
    assert one["reports"] == two["reports"] == a["study_id"].nunique() and {"subject_id", "study_id"} <= set(a)
    tree = tmp_path / "tree"
    with zipfile.ZipFile(reports) as zf:
        zf.extractall(tree)
    label_file(tree, tmp_path / "tree.csv")
    c = pd.read_csv(tmp_path / "tree.csv", dtype=str)
    pd.testing.assert_frame_equal(a.sort_values("study_id").reset_index(drop=True),
                                  c.sort_values("study_id").reset_index(drop=True))
    # the phantom reports describe the drawn findings: the labels agree with the release's own
    truth = pd.read_csv(mimic_dirs["jpg"] / "mimic-cxr-2.0.0-chexpert.csv.gz", dtype=str).set_index("study_id")
    mine = a.set_index("study_id").loc[truth.index]
    findings = [f for f in truth.columns if f != "subject_id"]
    agreement = (mine[findings].fillna("") == truth[findings].fillna("")).to_numpy().mean()
    assert agreement > 0.97, agreement
    # weak labels into prepare: the DICOM release with our labels
    from cxr_tf.datasets.mimic import source as mimic
    data = mimic.load(mimic_dirs["dicom"], labels=str(tmp_path / "zip.csv"), split="random", views="all")
    assert data.manifest["label_source"].str.startswith("zip.csv (cxr-tf rule labeler").all()
    assert set(data.manifest["label_method"]) == {"nlp"}
    shutil.rmtree(tree)


def test_uncertain_as_and_its_deprecated_spelling(tmp_path, caplog):
    """``label --uncertain-as`` maps uncertain mentions in the output; the old ``--uncertain`` still
    works, hidden from --help, and logs that it is deprecated."""
    import logging

    reports = tmp_path / "r.csv"
    reports.write_text('"FINDINGS: Possible pneumonia. No effusion."\n')
    new = _invoke([reports, "--out", tmp_path / "new.csv", "--vocabulary", "chestxray14", "--uncertain-as", "positive"])
    assert "deprecated" not in new.output
    with caplog.at_level(logging.WARNING, logger="cxr_tf.cli.label"):
        _invoke([reports, "--out", tmp_path / "old.csv", "--vocabulary", "chestxray14", "--uncertain", "positive"])
    assert any("deprecated" in r.getMessage() and "--uncertain-as" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "new.csv").read_bytes() == (tmp_path / "old.csv").read_bytes()
    assert pd.read_csv(tmp_path / "new.csv")["Pneumonia"].tolist() == [1.0]
    _invoke([reports, "--out", tmp_path / "neg.csv", "--vocabulary", "chestxray14"])
    assert pd.read_csv(tmp_path / "neg.csv")["Pneumonia"].tolist() == [0.0]
    assert "--uncertain " not in CliRunner().invoke(main, ["label", "--help"]).output
