"""Our TensorFlow-free Example/TFRecord writer agrees with TensorFlow's own parser."""

import numpy as np
import pytest
import tensorflow as tf

from cxr_tf.records import tfrecord


def test_examples_parse_in_tensorflow(tmp_path):
    path = tmp_path / "x.tfrecord"
    recs = [tfrecord.serialize_example({
        "image": bytes(range(256)) * 3, "image_id": f"img_{i}.png",
        "labels": np.array([1, 0, np.nan, -1], np.float32), "orig_size": np.array([1024, 512]),
        "neg": np.array([-5, 2**40], np.int64), "boxes": np.zeros(0, np.float32),
        "box_labels": np.zeros(0, np.int64)}) for i in range(3)]
    assert tfrecord.write_records(path, recs) == 3
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "image_id": tf.io.FixedLenFeature([], tf.string),
            "labels": tf.io.FixedLenFeature([4], tf.float32), "orig_size": tf.io.FixedLenFeature([2], tf.int64),
            "neg": tf.io.FixedLenFeature([2], tf.int64), "boxes": tf.io.VarLenFeature(tf.float32),
            "box_labels": tf.io.VarLenFeature(tf.int64)}
    got = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(str(path))]
    assert len(got) == 3
    ex = got[2]
    assert ex["image"].numpy() == bytes(range(256)) * 3 and ex["image_id"].numpy() == b"img_2.png"
    np.testing.assert_array_equal(ex["labels"].numpy()[[0, 1, 3]], [1, 0, -1])
    assert np.isnan(ex["labels"].numpy()[2])
    assert ex["orig_size"].numpy().tolist() == [1024, 512] and ex["neg"].numpy().tolist() == [-5, 2**40]
    assert ex["boxes"].values.shape == (0,)
    # and our reader checks the same framing
    assert list(tfrecord.read_records(path)) == recs


def test_corrupt_record_detected(tmp_path):
    path = tmp_path / "x.tfrecord"
    tfrecord.write_records(path, [b"hello world"])
    data = bytearray(path.read_bytes())
    data[14] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        list(tfrecord.read_records(path))
