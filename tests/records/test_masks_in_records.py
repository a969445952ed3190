"""Masks in records (schema 2): prepare writes each image's masks into its record (``mask_rle``,
``mask_labels``) and into ``masks.csv``, exactly as the source read them; a dataset without masks
writes neither; merge carries them over."""

import pytest

from cxr_tf import sources
from cxr_tf.imaging import masks as rle
from cxr_tf.records import tfrecord
from cxr_tf.records.merge import _ints
from cxr_tf.records.prepare import prepare
from cxr_tf.records.reader import SCHEMA_VERSION, RecordsDir


@pytest.fixture(scope="module")
def siim(tmp_path_factory):
    if "siim_acr" not in sources.names():
        pytest.skip("no dataset with masks is registered")
    root = tmp_path_factory.mktemp("siim")
    sources.synth_writer("siim_acr")(root / "raw", n_images=40, size=64, seed=3, workers=1)
    src = sources.get("siim_acr").load(root / "raw")
    summary = prepare("siim_acr", root / "raw", root / "rec", size=32, workers=1, images_per_shard=16)
    return src, RecordsDir(root / "rec"), summary


def test_masks_csv_holds_the_source_masks(siim):
    src, rec, summary = siim
    assert summary["schema_version"] == SCHEMA_VERSION >= 2     # masks came with schema 2
    assert len(src.masks) > 0 and summary["counts"]["masks"] == len(src.masks)
    written = rec.masks()
    key = ["image_id", "rle"]
    assert sorted(map(tuple, written[key].to_numpy())) == sorted(map(tuple, src.masks[key].to_numpy()))
    split_of = dict(zip(rec.manifest["image_id"], rec.manifest["split"]))
    assert (written["split"] == written["image_id"].map(split_of)).all()
    for split in rec.splits:
        assert set(rec.masks(split)["image_id"]) <= set(rec.manifest.query("split == @split")["image_id"])


def test_each_record_carries_its_masks_exactly(siim):
    src, rec, _ = siim
    by_image = src.masks.groupby("image_id")["rle"].apply(sorted).to_dict()
    seen = 0
    for split in rec.splits:
        for path in rec.shards(split)[0]:
            for data in tfrecord.read_records(path):
                f = tfrecord.example_features(data)
                image_id = tfrecord.feature_bytes(f["image_id"])[0].decode()
                stored = sorted(b.decode() for b in tfrecord.feature_bytes(f["mask_rle"]))
                assert stored == by_image.get(image_id, [])
                assert (_ints(f["mask_labels"]) == rec.findings.index("Pneumothorax")).all()
                seen += len(stored)
    assert seen == len(src.masks)
    one = src.masks.iloc[0]
    mask = rle.decode(one["rle"], int(one["width"]), int(one["height"]))
    assert mask.sum() == rle.area(one["rle"]) > 0


def test_no_masks_no_mask_files(records_dir):
    rec = RecordsDir(records_dir)
    assert not (records_dir / "masks.csv").exists() and rec.masks().empty
    path = rec.shards("train")[0][0]
    features = tfrecord.example_features(next(iter(tfrecord.read_records(path))))
    assert "mask_rle" not in features and "boxes" in features


def test_the_pipeline_reads_records_with_masks(siim):
    tf = pytest.importorskip("tensorflow")
    from cxr_tf.pipeline import make_dataset

    _, rec, _ = siim
    ds = make_dataset(rec.path, "train", training=False, batch_size=4, image_size=32)
    x, y = next(iter(ds))
    assert x.shape[1:3] == (32, 32) and y.shape[-1] == len(rec.findings)
    assert tf.reduce_all(tf.math.is_finite(tf.cast(x, tf.float32)))
