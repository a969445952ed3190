"""``prepare``: phantom layout -> records round trip, exact summaries, missing/corrupt images,
atomic and repeatable writing, and the real NIH sample."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_tf.core.errors import CxrImageError, MissingImagesError
from cxr_tf.imaging import decode_file, fit
from cxr_tf.records.prepare import prepare
from cxr_tf.records.reader import load_summary
from cxr_tf.datasets.chestxray14 import source as src

tf = pytest.importorskip("tensorflow")
from cxr_tf.pipeline import read_examples  # noqa: E402


def _records(records_dir, split):
    return {ex["image_id"].numpy().decode(): ex for ex in read_examples(records_dir, split)}


def test_roundtrip_images_labels_boxes(phantom_dir, records_dir):
    source = src.load(phantom_dir)
    man = pd.read_csv(records_dir / "manifest.csv", dtype={"patient": str})
    summary = load_summary(records_dir)
    assert summary["counts"]["written_images"] == len(man) == len(source.manifest) == 96
    boxes = pd.read_csv(records_dir / "boxes.csv")
    for split in ("train", "val", "test"):
        recs = _records(records_dir, split)
        part = man[man["split"] == split].set_index("image_id")
        assert set(recs) == set(part.index)
        for image_id, ex in recs.items():
            original = decode_file(phantom_dir / part.loc[image_id, "path"])
            expected, aff = fit(original, 48, "pad")
            got = tf.io.decode_png(ex["image"]).numpy()[..., 0]
            np.testing.assert_array_equal(got, expected)           # lossless, exactly what we wrote
            want_labels = part.loc[image_id, list(source.findings)].to_numpy(float)
            np.testing.assert_array_equal(ex["labels"].numpy(), want_labels)
            assert ex["orig_size"].numpy().tolist() == [64, 64]
            np.testing.assert_allclose(ex["affine"].numpy(), [aff.sx, aff.sy, aff.tx, aff.ty])
            want = source.boxes[source.boxes["image_id"] == image_id]
            got_boxes = ex["boxes"].values.numpy().reshape(-1, 4)
            assert len(got_boxes) == len(want)
            if len(want):  # 1024-frame boxes scaled to the 64-px file
                np.testing.assert_allclose(got_boxes, want[["x", "y", "w", "h"]].to_numpy() / 16, rtol=1e-5)
                names = [source.findings[i] for i in ex["box_labels"].values.numpy()]
                assert names == want["finding"].tolist()
    assert len(boxes) == len(source.boxes) and (boxes["split"] == "test").all()


def test_summary_counts_are_exact(phantom_dir, records_dir):
    s = load_summary(records_dir)
    man = pd.read_csv(records_dir / "manifest.csv", dtype={"patient": str})
    findings = s["findings"]
    for split, part in man.groupby("split"):
        assert s["splits"][split]["images"] == len(part)
        assert s["splits"][split]["patients"] == part["patient"].nunique()
        assert s["splits"][split]["positives"] == {f: int(part[f].sum()) for f in findings}
    assert s["labels"] == {f: int(man[f].sum()) for f in findings}
    assert s["views"] == man["view"].value_counts().to_dict()
    assert s["image_sizes"] == {i: [64, 64] for i in man["image_id"]}
    assert sum(v["images"] for v in s["shards"].values()) == 96
    assert s["counts"]["missing_images"] == 0 and s["counts"]["unreadable_images"] == 0
    assert man.groupby("patient")["split"].nunique().max() == 1


def test_missing_images_error_or_counted_skip(phantom_dir, tmp_path):
    import shutil
    data = tmp_path / "nih"
    shutil.copytree(phantom_dir, data)
    gone = sorted(data.glob("images_00[12]/images/*.png"))
    for p in gone:
        p.unlink()
    with pytest.raises(MissingImagesError) as err:
        prepare("chestxray14", data, tmp_path / "rec", size=32, workers=1)
    assert f"{len(gone)} listed image(s) not found" in str(err.value) and gone[0].name in str(err.value)
    assert not (tmp_path / "rec" / "summary.json").exists()
    s = prepare("chestxray14", data, tmp_path / "rec", size=32, workers=1, allow_missing=True)
    assert s["counts"]["missing_images"] == len(gone) and s["counts"]["written_images"] == 96 - len(gone)
    skipped = pd.read_csv(tmp_path / "rec" / "skipped.csv")
    assert sorted(skipped["image_id"]) == sorted(p.name for p in gone)
    assert (skipped["reason"] == "file not found").all()


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_error_or_named_skip(damaged_phantom, tmp_path, workers):
    data, victim, empty = damaged_phantom
    with pytest.raises(CxrImageError) as err:
        prepare("chestxray14", data, tmp_path / "rec", size=32, workers=workers)
    assert victim.name in str(err.value) or empty.name in str(err.value)
    assert not (tmp_path / "rec" / "summary.json").exists()
    s = prepare("chestxray14", data, tmp_path / "rec", size=32, workers=workers, allow_missing=True)
    assert s["counts"]["unreadable_images"] == 2 and s["counts"]["written_images"] == 94
    reasons = {u["image_id"]: u["reason"] for u in s["unreadable"]}
    assert "truncated" in reasons[victim.name] and "empty" in reasons[empty.name]


def test_odd_images_are_converted_not_skipped(phantom_dir, tmp_path):
    import shutil
    data = tmp_path / "nih"
    shutil.copytree(phantom_dir, data)
    files = sorted(data.glob("images_*/images/*.png"))
    gray = [decode_file(p) for p in files[:3]]
    Image.fromarray(np.dstack([gray[0]] * 3 + [np.full_like(gray[0], 255)]), "RGBA").save(files[0])
    Image.fromarray(gray[1].astype(np.uint16) * 257).save(files[1])                     # 16-bit
    Image.fromarray(gray[2]).save(files[2], format="JPEG", quality=95)               # JPEG named .png
    s = prepare("chestxray14", data, tmp_path / "rec", size=64, workers=1, encoding="png")
    assert s["counts"]["written_images"] == 96 and s["counts"]["unreadable_images"] == 0
    recs = {}
    for split in ("train", "val", "test"):
        recs.update(_records(tmp_path / "rec", split))
    for p, g in zip(files[:3], gray):
        got = tf.io.decode_png(recs[p.name]["image"]).numpy()[..., 0].astype(int)
        assert np.abs(got - g.astype(int)).mean() < 2.0, p.name


def test_rerun_after_kill_gives_same_result(phantom_dir, tmp_path):
    out = tmp_path / "rec"
    prepare("chestxray14", phantom_dir, out, size=32, workers=2, images_per_shard=10)
    first = {p.name: p.read_bytes() for p in out.glob("*.tfrecord")}
    manifest1 = (out / "manifest.csv").read_text()
    # simulate a kill: half-written shard, a stale shard of another layout, summary gone
    (out / "train-00000-of-00007.tfrecord.partial-999").write_bytes(b"junk")
    (out / "train-00003-of-00004.tfrecord").write_bytes(b"stale")
    (out / "summary.json").unlink()
    with pytest.raises(Exception, match="summary.json"):
        load_summary(out)
    prepare("chestxray14", phantom_dir, out, size=32, workers=1, images_per_shard=10)
    assert {p.name: p.read_bytes() for p in out.glob("*.tfrecord")} == first
    assert (out / "manifest.csv").read_text() == manifest1
    assert not list(out.glob("*partial*"))


def test_full_release_csv_with_600_images(tmp_path):
    """A 600-image directory with the full-size (112,120-row) label file: 111,520 missing."""
    from cxr_tf.datasets.chestxray14.phantom import write_dataset
    data = tmp_path / "nih"
    write_dataset(data, n_images=112120, n_patients=30805, size=32, seed=0, render_limit=600)
    assert len(list(data.glob("images_*/images/*.png"))) == 600
    s = prepare("chestxray14", data, tmp_path / "rec", size=32, allow_missing=True)
    assert s["counts"]["listed_images"] == 112120 and s["counts"]["missing_images"] == 111520
    assert s["counts"]["written_images"] == 600


def test_real_nih_sample(shared_dir, tmp_path):
    s = prepare("chestxray14", shared_dir / "nih", tmp_path / "rec", size=64, allow_missing=True)
    c = s["counts"]
    assert c["listed_images"] == 112120 and c["missing_images"] == 112108 and c["written_images"] == 12
    assert s["image_sizes"]["00000001_000.png"] == [512, 512]          # publisher-downscaled copy
    assert s["image_sizes"]["00009189_000.png"] == [1024, 1024]
    assert all(v["expected"] == v["listed"] for v in s["release_check"].values())
    man = pd.read_csv(tmp_path / "rec" / "manifest.csv").set_index("image_id")
    assert man.loc["00029539_000.png", ["Cardiomegaly", "Effusion", "Pleural_Thickening"]].tolist() == [1, 1, 1]
    recs = _records(tmp_path / "rec", "train")
    img = tf.io.decode_png(recs["00000001_000.png"]["image"]).numpy()[..., 0]
    np.testing.assert_array_equal(img, fit(decode_file(shared_dir / "nih/images/00000001_000.png"), 64)[0])
    json.dumps(s)
