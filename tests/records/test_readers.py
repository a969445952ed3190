"""The records-directory and run-directory readers: what they read, and a clear error naming the
directory for one that is not what it should be."""

import json

import pytest

from cxr_tf.core.errors import CxrDataError
from cxr_tf.records.reader import SCHEMA_VERSION, RecordsDir
from cxr_tf.models.rundir import RunDir, find_run


def test_records_dir_reads_what_prepare_wrote(records_dir):
    rec = RecordsDir(records_dir)
    assert rec.dataset == "chestxray14" and rec.stored_size == 48 and rec.aspect == "pad"
    assert rec.summary["schema_version"] == SCHEMA_VERSION and rec.encoding == "png"
    files, count = rec.shards("train")
    assert count == rec.splits["train"]["images"] and all(f.endswith(".tfrecord") for f in files)
    assert list(rec.split_frame("test")["split"].unique()) == ["test"]
    assert rec.label_indices(["Effusion", "Atelectasis"]) == [2, 0] and rec.label_indices() is None
    assert set(rec.boxes("test")["split"]) <= {"test"}
    with pytest.raises(CxrDataError, match="not in the records' labels"):
        rec.label_indices(["Nope"])
    with pytest.raises(CxrDataError, match="no 'holdout' shards"):
        rec.shards("holdout")


def test_not_a_records_dir(tmp_path):
    with pytest.raises(CxrDataError, match=f"{tmp_path}: no summary.json: not a completed records directory"):
        RecordsDir(tmp_path)
    (tmp_path / "summary.json").write_text("{broken")
    with pytest.raises(CxrDataError, match="unreadable summary"):
        RecordsDir(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(CxrDataError, match="newer than this cxr-tf reads"):
        RecordsDir(tmp_path)


def test_run_dir_reads_what_train_wrote(tiny_run, records_dir):
    run = RunDir(tiny_run)
    assert run.config["preset"] == "tiny" and run.state["epoch"] == 2
    assert run.model_path == tiny_run / "model.keras"
    assert run.records().path.resolve() == records_dir.resolve()
    assert find_run(tiny_run / "model.keras").path == tiny_run
    prevalence = run.train_prevalence(["Effusion"])
    assert 0 < prevalence["Effusion"] < 1


def test_not_a_run_dir(tmp_path):
    with pytest.raises(CxrDataError, match=f"{tmp_path}: not a run directory"):
        RunDir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"records": str(tmp_path)}))
    with pytest.raises(CxrDataError, match="no model.keras yet: no epoch has completed"):
        RunDir(tmp_path).model_path
    assert RunDir(tmp_path).state is None and find_run(tmp_path / "elsewhere" / "m.keras") is None
