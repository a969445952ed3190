"""The contract every registered source obeys, run over the registry (so a new dataset is covered
by adding its card, source module and phantom writer): a phantom tree in the source's real
layout -> a manifest that validates -> patient-disjoint splits (official and random) -> a
prepare round trip whose records hold exactly the images and labels the manifest names."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxr_tf.core import cards
from cxr_tf.sources import manifest
from cxr_tf import sources
from cxr_tf.imaging import decode_file, fit
from cxr_tf.records.prepare import prepare
from cxr_tf.records.reader import RecordsDir

REGISTERED = sources.names()


def test_the_registry_reads_the_cards():
    assert "chestxray14" in REGISTERED
    for name in REGISTERED:
        assert isinstance(sources.get(name), sources.Source)
        assert name in sources.synth_names(), f"{name}: its card names no [synth] writer for this test"
    with pytest.raises(Exception, match="unknown dataset 'nonesuch'"):
        sources.get("nonesuch")


def _variants():
    """(dataset, writer options) for every layout a source reads: a card's ``contract_variants``
    (e.g. MIMIC's JPG and DICOM releases), else its one layout."""
    out = []
    for name in REGISTERED:
        synth = cards.dataset_card(name)["synth"]
        for variant in synth.get("contract_variants", [{}]):
            out.append(pytest.param((name, variant), id="-".join([name, *map(str, variant)])))
    return out


@pytest.fixture(scope="module", params=_variants())
def tree(request, tmp_path_factory):
    name, variant = request.param
    out = tmp_path_factory.mktemp(f"contract_{name}")
    info = sources.synth_writer(name)(out, **{**cards.dataset_card(name)["synth"]["contract"], **variant})
    return name, Path(info.get("data_dir", out))


@pytest.mark.parametrize("split", ["official", "random"])
def test_manifest_validates_and_splits_are_patient_disjoint(tree, split):
    name, root = tree
    data = sources.get(name).load(root, split=split, seed=1)
    assert data.name == name and tuple(data.findings) == tuple(cards.dataset_card(name)["findings"])
    frame = manifest.validate(data.manifest, data.findings, where=root)
    assert list(frame.columns[:7]) == list(manifest.BASE_COLUMNS) and "split" in frame
    assert set(frame["split"]) <= set(manifest.SPLITS) and {"train", "val"} <= set(frame["split"])
    assert frame.groupby("patient")["split"].nunique().max() == 1
    assert data.missing == [] and all((root / p).is_file() for p in frame["path"])
    assert set(data.boxes.columns) >= set(sources.BOX_COLUMNS)
    assert set(data.boxes["image_id"]) <= set(frame["image_id"])
    assert set(data.boxes["finding"]) <= set(data.findings)


def test_the_tree_reads_the_same_wherever_it_sits(tree, tmp_path):
    """Users move and rename dataset folders: a copy under another name gives the same manifest."""
    import shutil
    name, root = tree
    moved = tmp_path / "renamed_by_the_user"
    shutil.copytree(root, moved)
    a, b = sources.get(name).load(root).manifest, sources.get(name).load(moved).manifest
    pd.testing.assert_frame_equal(a, b)
    assert all((moved / p).is_file() for p in b["path"])


def test_prepare_round_trip(tree, tmp_path):
    import tensorflow as tf

    from cxr_tf.pipeline import read_examples
    name, root = tree
    data = sources.get(name).load(root)
    summary = prepare(name, root, tmp_path / "rec", size=32, workers=1)
    records = RecordsDir(tmp_path / "rec")
    assert records.dataset == name and records.findings == list(data.findings)
    assert summary["counts"]["written_images"] == len(data.manifest)
    man = records.manifest.set_index("image_id")
    source = data.manifest.set_index("image_id")
    for split in records.splits:
        for ex in read_examples(records.path, split):
            image_id = ex["image_id"].numpy().decode()
            assert man.loc[image_id, "split"] == split == source.loc[image_id, "split"]
            want = fit(decode_file(root / source.loc[image_id, "path"]), 32, "pad")[0]
            np.testing.assert_array_equal(tf.io.decode_png(ex["image"]).numpy()[..., 0], want)
            labels = source.loc[image_id, list(data.findings)].to_numpy(np.float64)
            np.testing.assert_array_equal(ex["labels"].numpy(), labels.astype(np.float32))
    pd.testing.assert_frame_equal(records.boxes()[["image_id", "finding"]].sort_values(["image_id", "finding"])
                                  .reset_index(drop=True),
                                  data.boxes[["image_id", "finding"]].sort_values(["image_id", "finding"])
                                  .reset_index(drop=True), check_dtype=False)
