"""tf.data pipeline: exact decoding into compact uint8 batches, determinism, augmentation, label
policies, error messages, and MirroredStrategy on two logical CPU devices."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from cxr_tf.core.errors import CxrDataError
from cxr_tf.records.reader import load_summary
from cxr_tf.pipeline import Augment, distribute, make_dataset, preprocess_batch, read_examples, targets


def _stored(records_dir, split, scale=255.0):
    return {ex["image_id"].numpy().decode(): tf.io.decode_png(ex["image"]).numpy()[..., 0] / scale
            for ex in read_examples(records_dir, split)}


def test_eval_batches_are_exact_compact_and_complete(records_dir):
    """At the stored size, evaluation ships the stored bytes themselves: uint8, one channel."""
    stored = _stored(records_dir, "test", scale=1)
    man = pd.read_csv(records_dir / "manifest.csv").set_index("image_id")
    findings = load_summary(records_dir)["findings"]
    ds = make_dataset(records_dir, "test", batch_size=5, image_size=48, include_meta=True)
    seen = []
    for x, y, meta in ds:
        assert x.dtype == tf.uint8 and x.shape[1:] == (48, 48, 1)
        for img, lab, iid in zip(x.numpy(), y.numpy(), meta["image_id"].numpy()):
            iid = iid.decode()
            seen.append(iid)
            np.testing.assert_array_equal(img[..., 0], stored[iid])
            np.testing.assert_array_equal(lab, man.loc[iid, findings].to_numpy(float))
    assert sorted(seen) == sorted(stored) and len(seen) == len(set(seen))
    assert len(ds) == -(-len(stored) // 5)


def test_resize_rounds_to_uint8_or_keeps_float(records_dir):
    stored = _stored(records_dir, "val", scale=1)
    first = next(iter(stored.values()))
    want = tf.image.resize(first[None, ..., None].astype(np.float32), [32, 32]).numpy()[0, ..., 0]
    x, _ = next(iter(make_dataset(records_dir, "val", batch_size=2, image_size=32)))
    assert x.dtype == tf.uint8 and x.shape == (2, 32, 32, 1)
    diff = np.abs(x.numpy()[0, ..., 0].astype(int) - np.clip(np.round(want), 0, 255))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.98   # rounding; ties may fall either way
    xf, _ = next(iter(make_dataset(records_dir, "val", batch_size=2, image_size=32, dtype=tf.float32)))
    np.testing.assert_allclose(xf.numpy()[0, ..., 0], want, atol=1e-4)
    assert np.abs(xf.numpy() - x.numpy()).max() <= 0.5 + 1e-4


def test_preprocess_batch_is_the_identity_at_the_stored_size():
    img = tf.constant(np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8, 1))
    np.testing.assert_array_equal(preprocess_batch(img, 8).numpy(), img.numpy())
    np.testing.assert_array_equal(preprocess_batch(img, 8, dtype=tf.float32).numpy(), img.numpy().astype(np.float32))


def _first_batches(ds, n=2):
    return [b[0].numpy() for b in ds.take(n)]


def test_seeded_deterministic_training_stream(records_dir):
    kw = dict(batch_size=8, image_size=48, seed=7, deterministic=True,
              augment=Augment(hflip=True, crop_scale=(0.6, 1.0), rotation=10, brightness=0.1, contrast=0.2))
    a, b = make_dataset(records_dir, "train", **kw), make_dataset(records_dir, "train", **kw)
    ea, eb = _first_batches(a), _first_batches(b)
    for u, v in zip(ea, eb):
        np.testing.assert_array_equal(u, v)
    second_epoch = _first_batches(a)
    assert not np.array_equal(ea[0], second_epoch[0])        # reshuffled and re-augmented
    assert np.isfinite(ea[0]).all()


def test_hflip_only_yields_original_or_mirror(records_dir):
    stored = _stored(records_dir, "train")
    ds = make_dataset(records_dir, "train", batch_size=16, image_size=48,
                      augment=Augment(hflip=True), include_meta=True, seed=1)
    flips = 0
    for x, _, meta in ds:
        assert x.dtype == tf.uint8
        for img, iid in zip(x.numpy()[..., 0] / 255.0, meta["image_id"].numpy()):
            orig = stored[iid.decode()]
            if np.allclose(img, orig, atol=1e-6):
                continue
            np.testing.assert_allclose(img, orig[:, ::-1], atol=1e-6)
            flips += 1
    assert flips > 0


def test_label_policies_in_tensorflow():
    y = tf.constant([1.0, 0.0, -1.0, np.nan])
    assert targets(y, "ones", "zeros").numpy().tolist() == [1, 0, 1, 0]
    assert targets(y, "zeros", "ignore").numpy().tolist() == [1, 0, 0, -1]
    assert targets(y, "ignore", "zeros").numpy().tolist() == [1, 0, -1, 0]


def test_errors_name_the_problem(records_dir, tmp_path):
    with pytest.raises(CxrDataError, match="no 'holdout' shards"):
        make_dataset(records_dir, "holdout")
    with pytest.raises(CxrDataError, match="summary.json"):
        make_dataset(tmp_path, "train")


def test_tampered_shard_is_refused(records_dir, tmp_path):
    import shutil
    copy = tmp_path / "rec"
    shutil.copytree(records_dir, copy)
    shard = sorted(copy.glob("val-*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CxrDataError, match="missing or has changed"):
        make_dataset(copy, "val")


def test_mirrored_strategy_on_two_logical_cpus(records_dir):
    assert len(tf.config.list_logical_devices("CPU")) == 2, "conftest splits the CPU in two"
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    ds = make_dataset(records_dir, "train", batch_size=8, image_size=32, drop_remainder=True, seed=0)
    per_replica = next(iter(distribute(ds, strategy)))
    shapes = [t.shape[0] for t in strategy.experimental_local_results(per_replica[0])]
    assert shapes == [4, 4]
    import keras
    with strategy.scope():
        model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Rescaling(1 / 255),
                                  keras.layers.Conv2D(4, 3, strides=2), keras.layers.GlobalAveragePooling2D(),
                                  keras.layers.Dense(14, "sigmoid")])
        model.compile("adam", "binary_crossentropy")
    hist = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_eval_order_is_split_frame_order(records_dir):
    from cxr_tf.pipeline import split_frame
    frame = split_frame(records_dir, "test")
    ids = [i.decode() for _, _, m in make_dataset(records_dir, "test", batch_size=4, include_meta=True,
                                                  image_size=48) for i in m["image_id"].numpy()]
    assert ids == frame["image_id"].tolist()
