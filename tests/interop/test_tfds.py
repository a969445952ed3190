"""The TFDS builders load with ``tfds.load`` on phantom trees in the real layouts, with the
manifest's labels (0 = negative), patients, views and, for ChestX-ray14, normalized boxes."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")


def _load(name, manual_dir, data_dir, split):
    import cxr_tf.interop.tfds  # noqa: F401  (registers the builders)
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    return tfds.load(name, split=split, data_dir=str(data_dir), with_info=True,
                     download_and_prepare_kwargs={"download_config": config})


def test_chestxray14_builder(phantom_dir, tmp_path):
    from cxr_tf.datasets.chestxray14 import source as chestxray14
    src = chestxray14.load(phantom_dir)
    ds, info = _load("chestxray14", phantom_dir, tmp_path, "test")
    assert set(info.splits) == {"train", "validation", "test"}
    assert info.metadata["findings"] == list(src.findings) and "0 negative" in info.metadata["label_encoding"]
    man = src.manifest.set_index("image_id")
    n, boxed = 0, 0
    for ex in tfds.as_numpy(ds):
        image_id = ex["image_id"].decode()
        row = man.loc[image_id]
        assert row["split"] == "test" and ex["patient"].decode() == row["patient"]
        np.testing.assert_array_equal(ex["labels"], row[list(src.findings)].to_numpy(np.float32))
        assert ex["image"].shape == (64, 64, 1)
        want = src.boxes[src.boxes["image_id"] == image_id]
        assert len(ex["boxes"]["bbox"]) == len(want)
        if len(want):
            b = want.iloc[0]
            np.testing.assert_allclose(ex["boxes"]["bbox"][0], [b.y / 1024, b.x / 1024, (b.y + b.h) / 1024,
                                                                (b.x + b.w) / 1024], atol=1e-6)
            boxed += 1
        n += 1
    assert n == (man["split"] == "test").sum() and boxed > 0


def test_cxr_chexpert_builder_keeps_four_states(chexpert_dir, tmp_path):
    from cxr_tf.datasets.chexpert import source as chexpert
    src = chexpert.load(chexpert_dir)
    ds, info = _load("cxr_chexpert", chexpert_dir, tmp_path, "train")
    assert set(info.splits) == {"train", "validation", "test"}
    man = src.manifest.set_index("image_id")
    labels = []
    for ex in tfds.as_numpy(ds):
        row = man.loc[ex["image_id"].decode()]
        np.testing.assert_array_equal(ex["labels"], row[list(src.findings)].to_numpy(np.float32))
        assert ex["view"].decode() in ("AP", "PA") and ex["sex"].decode() in ("Male", "Female")
        labels.append(ex["labels"])
    y = np.stack(labels)
    assert {1.0, 0.0, -1.0} <= set(np.unique(y[np.isfinite(y)])) and np.isnan(y).any()
    assert len(y) == (man["split"] == "train").sum()


def test_mimic_cxr_builder(mimic_dirs, tmp_path):
    from cxr_tf.datasets.mimic import source as mimic
    src = mimic.load(mimic_dirs["jpg"], labels="negbio")
    ds, info = _load("mimic_cxr/negbio", mimic_dirs["jpg"], tmp_path, "test")
    assert set(info.splits) == {"train", "validation", "test"}
    assert info.metadata["findings"] == list(src.findings)
    man = src.manifest.set_index("image_id")
    n = 0
    for ex in tfds.as_numpy(ds):
        row = man.loc[ex["image_id"].decode()]
        assert row["split"] == "test" and ex["study"].decode() == row["study"]
        np.testing.assert_array_equal(ex["labels"], row[list(src.findings)].to_numpy(np.float32))
        assert ex["view"].decode() in ("AP", "PA") and ex["image"].shape == (77, 64, 1)
        n += 1
    assert n == (man["split"] == "test").sum() > 0


@pytest.mark.parametrize("name", ["padchest", "vindr_cxr", "rsna_pneumonia", "siim_acr", "openi"])
def test_every_new_dataset_has_a_working_builder(name, tmp_path):
    """Each builder is generated from its card: the val split of the contract phantom, with the
    manifest's labels and the boxes and masks the card's ``annotations`` name."""
    from cxr_tf import sources
    from cxr_tf.core import cards

    if name not in sources.names():
        pytest.skip(f"{name} is not registered")
    card = cards.dataset_card(name)
    info = sources.synth_writer(name)(tmp_path / "raw", **card["synth"]["contract"])
    root = info.get("data_dir", tmp_path / "raw")
    src = sources.get(name).load(root)
    ds, ds_info = _load(card["tfds"]["name"], root, tmp_path / "tfds", "validation")
    man = src.manifest.set_index("image_id")
    n = boxes = masks = 0
    for ex in tfds.as_numpy(ds):
        image_id = ex["image_id"].decode()
        assert man.loc[image_id, "split"] == "val"
        np.testing.assert_array_equal(ex["labels"], man.loc[image_id, list(src.findings)].to_numpy(np.float32))
        if "boxes" in card["annotations"]:
            assert len(ex["boxes"]["bbox"]) == (src.boxes["image_id"] == image_id).sum()
            boxes += len(ex["boxes"]["bbox"])
        if "masks" in card["annotations"]:
            want = sorted(src.masks.loc[src.masks["image_id"] == image_id, "rle"])
            assert sorted(r.decode() for r in ex["masks"]["rle"]) == want
            masks += len(want)
        n += 1
    assert n == (man["split"] == "val").sum() > 0
    assert ("boxes" in ds_info.features) == ("boxes" in card["annotations"])
    assert ("masks" in ds_info.features) == ("masks" in card["annotations"])
