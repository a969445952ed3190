"""``cxr-tf dicom --runner beam`` (the DirectRunner, two worker processes): the same metadata.csv,
errors.csv and images as ``--workers 2`` for the same salt (keyed pseudonyms included), on generated
identified DICOMs and on the real samples of ../shared; the key never reaches the disk."""

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("pydicom")
pytest.importorskip("dicomanonymizer")
pytest.importorskip("apache_beam")

from cxr_tf.cli import main  # noqa: E402
from cxr_tf.synth.phi import identifiers, write_identified  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("beam_phi_in")
    for p in (1, 2, 3):
        for f, syntax in ((0, "ExplicitVRLittleEndian"), (1, "RLELossless")):
            write_identified(root / f"site{p}" / f"img{f}.dcm", p, f, syntax=syntax,
                             photometric="MONOCHROME1" if (p + f) % 2 else "MONOCHROME2")
    good = (root / "site1" / "img0.dcm").read_bytes()
    (root / "broken").mkdir()
    (root / "broken" / "truncated.dcm").write_bytes(good[: len(good) // 2])
    return root


def _run(*args):
    res = CliRunner().invoke(main, ["dicom", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _same(pool: Path, beam: Path):
    for name in ("metadata.csv", "errors.csv"):
        assert (beam / name).read_bytes() == (pool / name).read_bytes(), name
    assert _files(beam) == _files(pool)          # images too; nothing else left behind (no work folder)


def test_beam_equals_the_pool_for_the_same_salt(inputs, tmp_path):
    _run(inputs, "--out", tmp_path / "pool", "--png", "--salt", "k3y-beam", "--workers", 2)
    res = _run(inputs, "--out", tmp_path / "beam", "--png", "--salt", "k3y-beam", "--workers", 2, "--runner", "beam")
    assert "converted 6 of 7" in res.output and "failed: 1" in res.output
    _same(tmp_path / "pool", tmp_path / "beam")
    meta = pd.read_csv(tmp_path / "beam" / "metadata.csv", dtype=str)
    assert meta["file_id"].nunique() == 6 and meta["patient"].nunique() == 3
    blob = b"\n".join(_files(tmp_path / "beam").values())
    assert b"k3y-beam" not in blob
    leaked = [v for p in (1, 2, 3) for f in (0, 1) for v in identifiers(p, f) if v.encode() in blob]
    assert leaked == []
    _run(inputs, "--out", tmp_path / "other", "--salt", "another", "--workers", 2, "--runner", "beam")
    other = pd.read_csv(tmp_path / "other" / "metadata.csv", dtype=str)
    assert not set(other["patient"]) & set(meta["patient"])      # another salt: other pseudonyms


def test_real_samples_beam_equals_pool(shared_dir, tmp_path):
    src = shared_dir / "dicom"
    _run(src, "--out", tmp_path / "pool", "--png", "--salt", "k", "--workers", 2)
    _run(src, "--out", tmp_path / "beam", "--png", "--salt", "k", "--workers", 2, "--runner", "beam")
    _same(tmp_path / "pool", tmp_path / "beam")
    assert len(pd.read_csv(tmp_path / "beam" / "metadata.csv")) >= 2


def test_beam_option_needs_beam_runner(inputs, tmp_path):
    res = CliRunner().invoke(main, ["dicom", str(inputs), "--out", str(tmp_path / "o"),
                                    "--beam-option", "direct_num_workers=2"])
    assert res.exit_code == 2 and "--beam-option needs --runner beam" in res.output
    res = CliRunner().invoke(main, ["dicom", str(inputs), "--out", str(tmp_path / "o"), "--runner", "beam",
                                    "--beam-option", "no-equals-sign"])
    assert res.exit_code != 0 and "KEY=VALUE" in res.output
