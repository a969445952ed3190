"""Without apache-beam, ``--runner beam`` is one clear error naming the extra, before any work; the
pool runner does not need it."""

import sys

import pytest
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.records.prepare import prepare


def test_runner_beam_without_apache_beam(phantom_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)          # import apache_beam -> ImportError
    with pytest.raises(CxrConfigError, match=r"cxr-tf\[beam\]"):
        prepare("chestxray14", phantom_dir, tmp_path / "rec", size=32, runner="beam")
    assert not (tmp_path / "rec").exists()
    res = CliRunner().invoke(main, ["prepare", "chestxray14", "--data-dir", str(phantom_dir), "--out",
                                    str(tmp_path / "rec"), "--runner", "beam"])
    assert res.exit_code != 0 and "pip install 'cxr-tf[beam]'" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["dicom", str(phantom_dir), "--out", str(tmp_path / "d"), "--runner", "beam"])
    assert res.exit_code != 0 and "pip install 'cxr-tf[beam]'" in res.output
    res = CliRunner().invoke(main, ["prepare", "chestxray14", "--data-dir", str(phantom_dir), "--out",
                                    str(tmp_path / "rec"), "--beam-option", "runner=FlinkRunner"])
    assert res.exit_code == 2 and "--beam-option needs --runner beam" in res.output
    with pytest.raises(CxrConfigError, match="unknown runner"):
        prepare("chestxray14", phantom_dir, tmp_path / "rec", size=32, runner="spark")
