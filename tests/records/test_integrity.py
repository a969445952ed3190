"""Shards that can travel: sizes and CRC-32C checksums in summary.json, `cxr-tf summary --verify`
naming every bad shard, a truncated shard refused before training, records without checksums
still read; and shard counts for multi-worker training (no TensorFlow here)."""

import json
import logging
import shutil
import zlib

import pytest
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.records import integrity
from cxr_tf.records.integrity import file_crc32c, verify
from cxr_tf.records.partition import write_subset
from cxr_tf.records.prepare import prepare
from cxr_tf.records.reader import SCHEMA_VERSION, RecordsDir, load_summary
from cxr_tf.records.writer import MIN_SHARDS_PER_WORKER, shard_count


def _copy(records_dir, tmp_path):
    copy = tmp_path / "records"
    shutil.copytree(records_dir, copy)
    return copy


def _flip(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_summary_records_size_and_checksum_of_every_shard(records_dir):
    s = load_summary(records_dir)
    assert s["schema_version"] == SCHEMA_VERSION == 3
    assert set(s["shards"]) == {p.name for p in records_dir.glob("*.tfrecord")}
    for name, info in s["shards"].items():
        data = (records_dir / name).read_bytes()
        assert info["bytes"] == len(data)
        # CRC-32C (Castagnoli), not zlib's CRC-32: the standard check value of "123456789" is e3069283
        assert info["crc32c"] == file_crc32c(records_dir / name) != f"{zlib.crc32(data):08x}"
    assert verify(records_dir) == []


def test_crc32c_is_the_castagnoli_checksum(tmp_path):
    (tmp_path / "x").write_bytes(b"123456789")
    assert file_crc32c(tmp_path / "x") == "e3069283"


def test_verify_names_a_flipped_byte(records_dir, tmp_path):
    copy = _copy(records_dir, tmp_path)
    shard = sorted(copy.glob("train-*.tfrecord"))[3]
    _flip(shard)
    res = CliRunner().invoke(main, ["summary", str(copy), "--verify"])
    assert res.exit_code == 1
    bad = [line for line in res.output.splitlines() if line.startswith("bad shard")]
    assert len(bad) == 1 and shard.name in bad[0] and "checksum" in bad[0]
    assert "1 of" in res.output and "prepare the records again, or restore the shard" in res.output
    ok = CliRunner().invoke(main, ["summary", str(records_dir), "--verify"])
    assert ok.exit_code == 0 and "match summary.json" in ok.output


def test_verify_names_every_bad_shard(records_dir, tmp_path):
    copy = _copy(records_dir, tmp_path)
    flipped, truncated, gone = sorted(copy.glob("*.tfrecord"))[1:4]
    _flip(flipped)
    truncated.write_bytes(truncated.read_bytes()[:-7])
    gone.unlink()
    bad = {b.name: b.problem for b in verify(copy)}
    assert set(bad) == {flipped.name, truncated.name, gone.name}
    assert bad[gone.name] == "missing" and "truncated" in bad[truncated.name]


def test_a_truncated_shard_is_refused_before_training(records_dir, tmp_path):
    copy = _copy(records_dir, tmp_path)
    shard = sorted(copy.glob("val-*.tfrecord"))[0]
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CxrDataError) as err:
        RecordsDir(copy).check_shards("train", "val")
    msg = str(err.value)
    assert shard.name in msg and f"{size - 10:,} bytes, summary.json records {size:,} (truncated)" in msg
    assert "restore the shard" in msg
    RecordsDir(copy).check_shards("test")            # other splits are not in the way


def test_two_missing_shards_in_one_error(records_dir, tmp_path):
    copy = _copy(records_dir, tmp_path)
    names = [p.name for p in sorted(copy.glob("train-*.tfrecord"))[:2]]
    for n in names:
        (copy / n).unlink()
    with pytest.raises(CxrDataError, match="2 shards listed in summary.json are missing") as err:
        RecordsDir(copy).shards("train")
    assert all(f"{n}: missing" in str(err.value) for n in names)


def test_records_without_checksums_still_read_and_verify_by_record_crcs(records_dir, tmp_path, caplog):
    copy = _copy(records_dir, tmp_path)
    s = json.loads((copy / "summary.json").read_text())
    s["schema_version"] = 2
    for info in s["shards"].values():
        del info["crc32c"]
    (copy / "summary.json").write_text(json.dumps(s))
    rec = RecordsDir(copy)
    assert rec.shards("train")[1] == rec.splits["train"]["images"]
    shard = sorted(copy.glob("train-*.tfrecord"))[0]
    _flip(shard)
    integrity._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="cxr_tf.records.integrity"):
        first, second = verify(copy), verify(copy)
    assert [b.name for b in first] == [shard.name] == [b.name for b in second]
    assert "corrupt" in first[0].problem
    warnings = [r for r in caplog.records if "before shard checksums" in r.getMessage()]
    assert len(warnings) == 1                          # warned once


def test_every_writer_records_checksums(records_dir, tmp_path):
    rec = RecordsDir(records_dir)
    subset = write_subset(records_dir, rec.manifest["image_id"][::3], tmp_path / "subset")
    s = load_summary(subset)
    assert s["schema_version"] == SCHEMA_VERSION and all("crc32c" in i for i in s["shards"].values())
    assert verify(subset) == []


@pytest.mark.parametrize("images,per_shard,workers,want", [
    (1000, 512, 1, MIN_SHARDS_PER_WORKER), (10000, 512, 1, 20), (1000, 512, 4, 32), (5, 512, 1, 5),
    (0, 512, 1, 1), (100, 10, 2, 16)])
def test_shard_count(images, per_shard, workers, want):
    assert shard_count(images, per_shard, workers) == want


def test_shard_count_refuses_zero_workers():
    with pytest.raises(CxrConfigError, match="training_workers"):
        shard_count(100, 10, 0)


def test_prepare_gives_each_split_eight_shards_per_training_worker(phantom_dir, tmp_path):
    s = prepare("chestxray14", phantom_dir, tmp_path / "rec", size=16, workers=1, training_workers=2)
    for split, part in s["splits"].items():
        shards = [n for n in s["shards"] if n.startswith(f"{split}-")]
        assert len(shards) == min(2 * MIN_SHARDS_PER_WORKER, part["images"])
        sizes = [s["shards"][n]["images"] for n in shards]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == part["images"]
    assert s["config"]["training_workers"] == 2
