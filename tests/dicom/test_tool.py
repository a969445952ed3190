"""``cxr-tf dicom``: no identifier of the fixtures reaches any output unless ``--keep-phi``; keyed
pseudonyms are stable for a salt and differ across salts; bad files are listed, the rest converted;
parallel output equals serial output."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("pydicom")
pytest.importorskip("dicomanonymizer")

from cxr_tf.cli import main  # noqa: E402
from cxr_tf.synth.phi import identifiers, write_identified  # noqa: E402

PATIENTS, FILES = (1, 2, 3), (0, 1)
SYNTAXES = {0: "ExplicitVRLittleEndian", 1: "RLELossless"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phi_in")
    for p in PATIENTS:
        for f in FILES:
            write_identified(root / f"site{p}" / f"img{f}.dcm", p, f, syntax=SYNTAXES[f],
                             photometric="MONOCHROME1" if (p + f) % 2 else "MONOCHROME2")
    good = (root / "site1" / "img0.dcm").read_bytes()
    (root / "broken").mkdir()
    (root / "broken" / "truncated.dcm").write_bytes(good[: len(good) // 2])
    (root / "broken" / "notes.dcm").write_bytes(b"this is not DICOM at all\n" * 20)
    return root


def _run(args):
    res = CliRunner().invoke(main, ["dicom", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res


def _all_bytes(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _every_identifier():
    return [v for p in PATIENTS for f in FILES for v in identifiers(p, f)]


def test_no_identifier_reaches_any_output(inputs, tmp_path):
    out = tmp_path / "out"
    res = _run([inputs, "--out", out, "--png", "--salt", "s3cret-salt", "--workers", "1"])
    assert "converted 6 of 8" in res.output and "failed: 2" in res.output
    blob = _all_bytes(out)
    leaked = [v for v in _every_identifier() if v.encode() in blob]
    assert leaked == [], leaked
    assert b"s3cret-salt" not in blob
    meta = pd.read_csv(out / "metadata.csv", dtype=str)
    assert len(meta) == 6 and meta["deid_profile"].str.contains("PS3.15").all()
    assert (meta["photometric"].isin(["MONOCHROME1", "MONOCHROME2"])).all() and set(meta["modality"]) == {"DX"}
    assert set(meta["transfer_syntax"]) == {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"}
    assert meta["study_uid"].str.startswith("2.25.").all() and meta["sop_uid"].str.startswith("2.25.").all()
    errors = pd.read_csv(out / "errors.csv")
    assert sorted(Path(f).name for f in errors["file"]) == ["notes.dcm", "truncated.dcm"]
    assert errors["reason"].str.len().min() > 10
    for image in meta["image"]:                                   # display-ready, bone bright
        img = np.asarray(Image.open(out / image))
        h, w = img.shape
        assert img[h // 3: 2 * h // 3, w // 2 - 1: w // 2 + 2].mean() > img[h // 3: 2 * h // 3, 10:14].mean() + 40


def test_pseudonyms_are_keyed(inputs, tmp_path):
    runs = {}
    for name, salt in (("a", "salt-one"), ("b", "salt-one"), ("c", "salt-two")):
        _run([inputs, "--out", tmp_path / name, "--salt", salt, "--workers", "1"])
        runs[name] = pd.read_csv(tmp_path / name / "metadata.csv", dtype=str)
    a, b, c = runs["a"], runs["b"], runs["c"]
    pd.testing.assert_frame_equal(a, b)                                       # same salt: same pseudonyms
    per_patient = a.groupby("study_uid")["patient"].nunique()
    assert (per_patient == 1).all() and a["patient"].nunique() == len(PATIENTS)   # one pseudonym per patient
    for col in ("patient", "study_uid", "series_uid", "sop_uid", "file_id"):
        assert set(a[col]).isdisjoint(c[col]), col                            # another salt: all different
    assert a["study_uid"].nunique() == len(PATIENTS)                          # relationships kept


def test_random_salt_is_not_linkable(inputs, tmp_path, monkeypatch):
    monkeypatch.delenv("CXR_TF_DEID_SALT", raising=False)
    for name in ("x", "y"):
        res = _run([inputs / "site1", "--out", tmp_path / name, "--workers", "1"])
        assert "random salt" in res.output
    x, y = (pd.read_csv(tmp_path / n / "metadata.csv", dtype=str) for n in ("x", "y"))
    assert set(x["patient"]).isdisjoint(y["patient"])


def test_keep_phi_is_the_only_way_identifiers_reach_the_output(inputs, tmp_path):
    out = tmp_path / "phi"
    res = _run([inputs, "--out", out, "--jpg", "--keep-phi", "--workers", "1"])
    assert "not de-identified" in res.output
    meta = pd.read_csv(out / "metadata.csv", dtype=str)
    row = meta[meta["file"] == "site2/img1.dcm"].iloc[0]
    assert row["patient_id"] == "PHI2-MRN" and row["patient_name"] == "PHI2^NAME^GIVEN"
    assert row["institution"] == "PHI2 GENERAL HOSPITAL" and row["sop_uid"].startswith("1.2.826.0.1.3680043.10.1")
    assert (out / "images" / "site2/img1.dcm.jpg").is_file()


def test_parallel_equals_serial(inputs, tmp_path):
    _run([inputs, "--out", tmp_path / "one", "--png", "--salt", "k", "--workers", "1"])
    _run([inputs, "--out", tmp_path / "two", "--png", "--salt", "k", "--workers", "2"])
    for name in ("metadata.csv", "errors.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert _all_bytes(tmp_path / "one" / "images") == _all_bytes(tmp_path / "two" / "images")


def test_phantom_mimic_dicom_release_is_de_identified(mimic_dirs, tmp_path):
    src = mimic_dirs["dicom"]
    with gzip.open(src / "cxr-record-list.csv.gz", "rt") as fh:
        records = pd.read_csv(fh, dtype=str)
    _run([src / "files", "--out", tmp_path / "m", "--png", "--salt", "k", "--workers", "2"])
    meta = pd.read_csv(tmp_path / "m" / "metadata.csv", dtype=str)
    assert len(meta) == len(records) and set(meta["transfer_syntax"]) >= {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"}
    blob = _all_bytes(tmp_path / "m")
    for value in [*records["subject_id"], *records["study_id"], *records["dicom_id"], "Phantom General Hospital",
                  "Phantom^Patient", "Referrer^Phantom", "PRIVATE-", "ACC5"]:
        assert value.encode() not in blob, value


def test_nothing_found_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["dicom", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no DICOM files found" in res.output
