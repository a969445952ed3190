"""The TFDS builders on Apache Beam: given Beam options, ``_generate_examples`` returns a Beam
PTransform and ``download_and_prepare`` builds through the DirectRunner the same examples (ids,
labels, pixels, boxes) as the plain generator; without options it stays a generator."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
beam = pytest.importorskip("apache_beam")


def _build(manual_dir, data_dir, beam_options=None):
    import cxr_tf.interop.tfds  # noqa: F401  (registers the builders)
    builder = tfds.builder("chestxray14", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir), beam_options=beam_options))
    return builder


def _examples(builder) -> dict:
    out = {}
    for split in builder.info.splits:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            out[ex["image_id"].decode()] = (split, ex)
    return out


def test_builder_builds_through_beam(phantom_dir, tmp_path):
    from cxr_tf.interop.tfds import BUILDERS

    options = beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"])
    on_beam = _build(phantom_dir, tmp_path / "beam", options)
    assert on_beam._use_beam
    plain = _build(phantom_dir, tmp_path / "plain")
    assert not plain._use_beam
    got, want = _examples(on_beam), _examples(plain)
    assert set(got) == set(want) and len(got) == 96
    assert {s: n.num_examples for s, n in on_beam.info.splits.items()} == \
           {s: n.num_examples for s, n in plain.info.splits.items()}
    boxed = 0
    for image_id, (split, ex) in want.items():
        split_b, ex_b = got[image_id]
        assert split_b == split
        np.testing.assert_array_equal(ex_b["image"], ex["image"])
        np.testing.assert_array_equal(ex_b["labels"], ex["labels"])
        np.testing.assert_array_equal(ex_b["boxes"]["bbox"], ex["boxes"]["bbox"])
        boxed += len(ex["boxes"]["bbox"]) > 0
    assert boxed > 0
    # what the builder hands TFDS: a PTransform with Beam options, a plain iterable without
    from cxr_tf import sources
    data = sources.get("chestxray14").load(phantom_dir)
    builder = BUILDERS["chestxray14"](data_dir=str(tmp_path / "x"))
    builder._use_beam = True
    assert isinstance(builder._generate_examples(data, "test"), beam.PTransform)
    builder._use_beam = False
    first = next(iter(builder._generate_examples(data, "test")))
    assert first[0] in want and first[1]["image"].shape == (64, 64, 1)
