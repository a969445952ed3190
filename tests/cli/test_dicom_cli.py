"""``cxr-tf dicom`` through click: every byte of every output file is free of the fixtures'
identifiers (file names included) unless ``--keep-phi``; pseudonyms link runs with one salt only;
unreadable files go to errors.csv while the rest convert; --workers 2 writes what --workers 1 does."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("pydicom")
pytest.importorskip("dicomanonymizer")

from cxr_tf.cli import main  # noqa: E402
from cxr_tf.synth.phi import identified_dataset, identifiers  # noqa: E402

PHI_NAME = "PHIFILE-Doe_Jane_19370111"      # a file name that itself carries identifiers
CASES = [(1, 0, "ExplicitVRLittleEndian", "MONOCHROME2"), (1, 1, "RLELossless", "MONOCHROME1"),
         (2, 0, "JPEG2000Lossless", "MONOCHROME1"), (3, 0, "ExplicitVRLittleEndian", "MONOCHROME2")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dicom_cli_in")
    for p, f, syntax, photometric in CASES:
        ds = identified_dataset(p, f, syntax=syntax, photometric=photometric)
        name = f"{PHI_NAME}_{p}_{f}.dcm" if p == 1 else f"scan_{p}_{f}.dcm"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        (root / f"patient{p}").mkdir(exist_ok=True)
        (root / f"patient{p}" / name).write_bytes(buf.getvalue())
    good = (root / "patient3" / "scan_3_0.dcm").read_bytes()
    (root / "bad").mkdir()
    (root / "bad" / "cut.dcm").write_bytes(good[: len(good) // 3])
    (root / "bad" / "readme.dcm").write_text("not a DICOM file\n" * 30)
    (root / "bad" / "ignored.txt").write_text("neither .dcm nor DICOM: not picked up\n")
    return root


def _secrets():
    return [v for p, f, _, _ in CASES for v in identifiers(p, f)] + [PHI_NAME]


def _run(*args):
    res = CliRunner().invoke(main, ["dicom", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res


def _everything(folder: Path) -> bytes:
    """Every byte of every file under ``folder``, and every file's name."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return b"\n".join([p.read_bytes() for p in files] + [str(p.relative_to(folder)).encode() for p in files])


@pytest.mark.parametrize("fmt", ["--png", "--jpg"])
def test_deidentified_output_has_no_identifier(inputs, tmp_path, fmt):
    out = tmp_path / "out"
    res = _run(inputs / "patient1", inputs / "patient2", inputs / "patient3", "--out", out, fmt,
               "--salt", "pepper-1", "--workers", "1")
    assert "converted 4 of 4" in res.output
    blob = _everything(out)
    assert [s for s in _secrets() if s.encode() in blob] == []
    assert b"pepper-1" not in blob
    meta = pd.read_csv(out / "metadata.csv", dtype=str, keep_default_na=False)
    assert len(meta) == 4 and set(meta["view"]) == {"PA"} and meta["deid_profile"].str.contains("PS3.15").all()
    assert meta["study_uid"].str.startswith("2.25.").all() and meta["patient"].str.startswith("P-").all()
    images = sorted((out / "images").iterdir())
    assert len(images) == 4 and sorted(f"images/{p.name}" for p in images) == sorted(meta["image"])
    for p in images:        # display-ready 8-bit grayscale, bone (the centre strip) brighter than lungs
        img = np.asarray(Image.open(p))
        assert img.dtype == np.uint8 and img.ndim == 2
        assert img[:, 18:22].mean() > (img[:, 8:14].mean() + img[:, 26:32].mean()) / 2


def test_keep_phi_keeps_identifiers(inputs, tmp_path):
    out = tmp_path / "phi"
    _run(inputs / "patient1", "--out", out, "--png", "--keep-phi")
    meta = pd.read_csv(out / "metadata.csv", dtype=str, keep_default_na=False)
    blob = (out / "metadata.csv").read_bytes()
    for needle in ("PHI1^NAME^GIVEN", "PHI1-MRN", "19370111", "PHIACC1000", "PHI1 GENERAL HOSPITAL", PHI_NAME,
                   identifiers(1, 0)[-6]):
        assert needle.encode() in blob, needle
    assert meta["deid_profile"].str.startswith("none").all()
    assert any(PHI_NAME in p.name for p in (out / "images").rglob("*.png"))


def test_pseudonyms_link_runs_with_the_same_salt_only(inputs, tmp_path):
    def patients(salt, name):
        _run(inputs / "patient1", inputs / "patient2", "--out", tmp_path / name, "--salt", salt)
        meta = pd.read_csv(tmp_path / name / "metadata.csv", dtype=str)
        return list(meta["patient"]), list(meta["sop_uid"])
    first, again, other = patients("s1", "a"), patients("s1", "b"), patients("s2", "c")
    assert first == again
    assert len(set(first[0])) == 2                   # patient 1's two files share one pseudonym
    assert not set(first[0]) & set(other[0]) and not set(first[1]) & set(other[1])


def test_bad_files_listed_rest_converted(inputs, tmp_path):
    out = tmp_path / "mixed"
    res = _run(inputs, "--out", out, "--salt", "s", "--png")
    assert "converted 4 of 6" in res.output and "failed: 2" in res.output
    errors = pd.read_csv(out / "errors.csv", dtype=str)
    assert sorted(Path(f).name for f in errors["file"]) == ["cut.dcm", "readme.dcm"]
    why = dict(zip((Path(f).name for f in errors["file"]), errors["reason"]))
    assert "truncated" in why["cut.dcm"] and "not a DICOM" in why["readme.dcm"]
    assert len(pd.read_csv(out / "metadata.csv")) == 4


def test_parallel_equals_serial(inputs, tmp_path):
    for w in (1, 2):
        _run(inputs, "--out", tmp_path / f"w{w}", "--salt", "s", "--png", "--workers", str(w))
    assert (tmp_path / "w1" / "metadata.csv").read_bytes() == (tmp_path / "w2" / "metadata.csv").read_bytes()
    assert (tmp_path / "w1" / "errors.csv").read_bytes() == (tmp_path / "w2" / "errors.csv").read_bytes()
    for p in (tmp_path / "w1" / "images").iterdir():
        assert p.read_bytes() == (tmp_path / "w2" / "images" / p.name).read_bytes()


def test_help_lists_the_command():
    res = CliRunner().invoke(main, ["dicom", "--help"])
    assert res.exit_code == 0 and "--keep-phi" in res.output and "--salt" in res.output
