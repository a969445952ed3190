"""A damaged shard stops `cxr-tf train` and `cxr-tf evaluate` with one line naming it and the
fix, not a TensorFlow traceback; a truncated one is refused before training starts; shard-file
sharding under several training workers."""

import logging
import shutil

import pytest
import tensorflow as tf
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.pipeline import shard_policy

TF_TEXT = ("Traceback", "IteratorGetNext", "DataLossError", "tensorflow", "node ", "[[")


def _copy_with(records_dir, tmp_path, split, damage):
    copy = tmp_path / "records"
    shutil.copytree(records_dir, copy)
    shard = sorted(copy.glob(f"{split}-*.tfrecord"))[1]
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF                 # a byte inside a record: its CRC no longer matches
    else:
        data = data[:-25]
    shard.write_bytes(bytes(data))
    return copy, shard


def _train(records, out):
    return CliRunner().invoke(main, ["train", "--records", str(records), "--out", str(out), "--preset", "tiny",
                                     "--weights", "none", "--epochs", "1", "--batch-size", "8", "--image-size", "32",
                                     "--set", "verbose=0", "--set", "tb_cam_images=0", "--set", "strategy=default"])


def _one_clean_line(res, shard):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert shard.name in errors[0] and "prepare the records again, or restore the shard" in errors[0]
    assert not any(t in res.output for t in TF_TEXT), res.output
    return errors[0]


def test_train_stops_with_one_line_naming_a_corrupt_shard(records_dir, tmp_path):
    copy, shard = _copy_with(records_dir, tmp_path, "train", "flip")
    line = _one_clean_line(_train(copy, tmp_path / "run"), shard)
    assert "corrupt shard (checksum" in line


def test_train_refuses_a_truncated_shard_before_starting(records_dir, tmp_path):
    copy, shard = _copy_with(records_dir, tmp_path, "val", "truncate")
    line = _one_clean_line(_train(copy, tmp_path / "run"), shard)
    assert "(truncated)" in line
    assert not (tmp_path / "run").exists()            # refused before anything was built or written


def test_evaluate_names_a_corrupt_shard(tiny_run, records_dir, tmp_path):
    copy, shard = _copy_with(records_dir, tmp_path, "test", "flip")
    res = CliRunner().invoke(main, ["evaluate", "--run", str(tiny_run), "--records", str(copy), "--bootstrap", "10"])
    _one_clean_line(res, shard)


def test_shard_policy_by_file_only_with_eight_files_per_worker(caplog):
    FILE, DATA = tf.data.experimental.AutoShardPolicy.FILE, tf.data.experimental.AutoShardPolicy.DATA
    with caplog.at_level(logging.WARNING, logger="cxr_tf.pipeline"):
        assert shard_policy("train", 8, 1) == FILE and shard_policy("train", 16, 2) == FILE
        assert not caplog.records
        assert shard_policy("train", 7, 1) == DATA and not caplog.records     # one worker: nothing to say
        assert shard_policy("train", 15, 2) == DATA
    assert len(caplog.records) == 1 and "--training-workers 2" in caplog.records[0].getMessage()


@pytest.mark.parametrize("workers", [2])
def test_shard_policy_reads_tf_config(monkeypatch, workers):
    import json
    cluster = {"worker": [f"127.0.0.1:{20000 + i}" for i in range(workers)]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert shard_policy("train", 8 * workers - 1) == tf.data.experimental.AutoShardPolicy.DATA
    assert shard_policy("train", 8 * workers) == tf.data.experimental.AutoShardPolicy.FILE
