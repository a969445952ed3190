"""TFDS builders over the cxr_tf sources (their own package, so ``import cxr_tf`` stays light).

    import cxr_tf.tfds                       # registers the builders
    ds = tfds.load("chestxray14", split="train", data_dir="~/tensorflow_datasets",
                   download_and_prepare_kwargs={"download_config":
                       tfds.download.DownloadConfig(manual_dir="/data/nih")})

``chestxray14`` (TFDS has none), ``mimic_cxr`` (configs ``chexpert`` and ``negbio``: whose NLP labels)
and ``cxr_chexpert``: TFDS ships a ``chexpert`` builder of its own,
which reads only the small variant, drops Sex, Age and AP/PA, and encodes a negative as 2; ours is
registered under another name so both can be used. See :mod:`cxr_tf.tfds.builders`.
"""

from cxr_tf.tfds.builders import Chestxray14, CxrChexpert, MimicCxr  # noqa: F401
