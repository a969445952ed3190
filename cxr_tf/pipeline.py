"""tf.data input pipeline over a records directory written by ``cxr-tf prepare``.

``make_dataset(records_dir, "train")`` reads the split's shards in parallel, decodes, augments
(training), resizes to the model's input size, normalizes (ImageNet mean/std by default, or a Keras
application's own ``preprocess_input``), maps label states to targets, batches and prefetches.

Random augmentation uses stateless ops seeded per element from ``tf.data.Dataset.random``, so with
``seed`` and ``deterministic=True`` two runs yield identical batches, and every epoch still differs.
The dataset works unchanged under ``tf.distribute`` strategies (``model.fit`` distributes it; or
use :func:`distribute`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from cxr_tf.errors import CxrDataError
from cxr_tf.findings import BLANK_POLICIES, IGNORE, UNCERTAIN_POLICIES
from cxr_tf.prepare import load_summary

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keras application module whose preprocess_input a "model:<name>" normalization uses.
_APP_MODULES = {"densenet121": "densenet", "resnet50": "resnet50", "vgg16": "vgg16",
                "inception_v3": "inception_v3", "inceptionv3": "inception_v3"}


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation. The default is CheXNet's: random horizontal flip only.

    ``crop_scale``: (min, max) fraction of the image area kept by a random square crop;
    ``rotation``: maximum absolute rotation in degrees; ``brightness``: maximum additive delta on
    [0, 1] pixels; ``contrast``: maximum relative contrast change (0.2 -> factor in [0.8, 1.2]).
    """

    hflip: bool = True
    crop_scale: tuple[float, float] | None = None
    rotation: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0


NO_AUGMENT = Augment(hflip=False)


def features_spec(num_findings: int) -> dict:
    """The parsing spec of one record (see :mod:`cxr_tf.records` for the schema)."""
    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "image_id": tf.io.FixedLenFeature([], tf.string),
        "view": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "labels": tf.io.FixedLenFeature([num_findings], tf.float32),
        "orig_size": tf.io.FixedLenFeature([2], tf.int64),
        "affine": tf.io.FixedLenFeature([4], tf.float32),
        "boxes": tf.io.VarLenFeature(tf.float32),
        "box_labels": tf.io.VarLenFeature(tf.int64),
    }


def split_files(records_dir, split: str) -> tuple[list[str], int, dict]:
    """The shard paths of one split, its image count, and the directory's summary.

    Raises a clear error if the directory is incomplete or the split is empty."""
    summary = load_summary(records_dir)
    shards = {n: s for n, s in summary["shards"].items() if n.startswith(f"{split}-")}
    if not shards:
        raise CxrDataError(records_dir, f"no {split!r} shards; splits present: "
                                        f"{sorted(summary['splits'])}")
    files = []
    for name, info in sorted(shards.items()):
        path = Path(records_dir) / name
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            raise CxrDataError(path, "shard listed in summary.json is missing or has changed; "
                                     "rerun `cxr-tf prepare`")
        files.append(str(path))
    return files, sum(s["images"] for s in shards.values()), summary


def targets(labels: tf.Tensor, uncertain: str = "ignore", blank: str = "zeros") -> tf.Tensor:
    """Label states -> training targets, as :func:`cxr_tf.findings.apply_policy` does in NumPy."""
    if uncertain not in UNCERTAIN_POLICIES or blank not in BLANK_POLICIES:
        raise ValueError(f"uncertain in {UNCERTAIN_POLICIES}, blank in {BLANK_POLICIES}")
    unc_value = {"ignore": IGNORE, "zeros": 0.0, "ones": 1.0}[uncertain]
    out = tf.where(tf.equal(labels, -1.0), unc_value, labels)
    return tf.where(tf.math.is_nan(out), IGNORE if blank == "ignore" else 0.0, out)


def normalize(images: tf.Tensor, normalization: str = "imagenet") -> tf.Tensor:
    """Normalize [0, 1] RGB images: ``imagenet`` mean/std, ``unit`` (unchanged), or
    ``model:<name>`` for a Keras application's own ``preprocess_input`` (e.g. ``model:resnet50``)."""
    if normalization == "imagenet":
        return (images - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    if normalization == "unit":
        return images
    if normalization.startswith("model:"):
        return _app_preprocess(normalization.split(":", 1)[1].lower())(images * 255.0)
    raise ValueError(f"unknown normalization {normalization!r}")


@tf.autograph.experimental.do_not_convert
def _app_preprocess(name: str):
    """The ``preprocess_input`` of a Keras application (expects 0..255 RGB)."""
    import importlib

    if name not in _APP_MODULES:
        raise ValueError(f"no preprocess_input known for {name!r}; known: {sorted(_APP_MODULES)}")
    return importlib.import_module(f"keras.applications.{_APP_MODULES[name]}").preprocess_input


def _rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
    """Rotate a HxWxC image about its centre by ``degrees`` (bilinear, black fill)."""
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    a = degrees * (math.pi / 180.0)
    cos, sin = tf.cos(a), tf.sin(a)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # output (x, y) samples input (cos*x - sin*y + ox, sin*x + cos*y + oy): rotation about centre
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy,
                          0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    return out[0]


def preprocess(image_bytes: tf.Tensor, image_size: int, augment: Augment | None,
               seed: tf.Tensor | None = None, channels: int = 3,
               normalization: str = "imagenet") -> tf.Tensor:
    """Encoded grayscale image -> float32 ``image_size`` x ``image_size`` x ``channels``.

    With ``augment`` (training) a per-element ``seed`` (int64[2]) drives stateless random ops."""
    image = tf.io.decode_image(image_bytes, channels=1, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    aug = augment or NO_AUGMENT
    seeds = tf.random.experimental.stateless_split(seed, 5) if seed is not None else None
    box = tf.constant([0.0, 0.0, 1.0, 1.0])
    if aug.crop_scale and seeds is not None:
        lo, hi = aug.crop_scale
        side = tf.sqrt(tf.random.stateless_uniform([], seeds[0], lo, hi))
        off = tf.random.stateless_uniform([2], seeds[1], 0.0, 1.0) * (1.0 - side)
        box = tf.stack([off[0], off[1], off[0] + side, off[1] + side])
    image = tf.image.crop_and_resize(image[None], box[None], [0], [image_size, image_size])[0]
    if seeds is not None:
        if aug.rotation:
            deg = tf.random.stateless_uniform([], seeds[2], -aug.rotation, aug.rotation)
            image = _rotate(image, deg)
        if aug.hflip:
            flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        if aug.brightness or aug.contrast:
            b = tf.random.stateless_uniform([2], seeds[4], -1.0, 1.0)
            image = (image - 0.5) * (1.0 + aug.contrast * b[1]) + 0.5 + aug.brightness * b[0]
        image = tf.clip_by_value(image, 0.0, 1.0)
    image.set_shape([image_size, image_size, 1])
    if channels == 3:
        image = tf.tile(image, [1, 1, 3])
    return normalize(image, normalization) if channels == 3 else image


def make_dataset(records_dir, split: str, *, batch_size: int = 16, image_size: int = 224,
                 training: bool | None = None, augment: Augment | None = Augment(),
                 normalization: str = "imagenet", uncertain: str = "ignore", blank: str = "zeros",
                 shuffle_buffer: int = 2048, seed: int | None = None, deterministic: bool = False,
                 repeat: bool = False, drop_remainder: bool = False, include_meta: bool = False,
                 channels: int = 3, findings=None) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(images, targets)`` for one split.

    ``training`` (default: ``split == "train"``) shuffles and augments; evaluation resizes only and
    keeps record order. ``include_meta`` adds a third element: a dict with ``image_id``, ``view``,
    ``orig_size`` and ``affine`` (for mapping heatmaps back to original pixels).
    ``batch_size`` is the global batch size under a distribution strategy. ``findings`` selects
    (and orders) label columns by name, e.g. the 8 ChestX-ray8 findings out of 14.
    """
    files, count, summary = split_files(records_dir, split)
    select = label_indices(summary, findings)
    training = split == "train" if training is None else training
    spec = features_spec(len(summary["findings"]))
    aug = augment if training else None
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic or not training)
    ds = ds.apply(tf.data.experimental.assert_cardinality(count))
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(min(shuffle_buffer, count), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, rand))

    def _map(serialized, element_seed):
        ex = tf.io.parse_single_example(serialized, spec)
        image = preprocess(ex["image"], image_size, aug, element_seed if aug else None, channels,
                           normalization)
        y = targets(ex["labels"], uncertain, blank)
        if select is not None:
            y = tf.gather(y, select)
        if not include_meta:
            return image, y
        meta = {k: ex[k] for k in ("image_id", "view", "orig_size", "affine")}
        return image, y, meta

    ds = ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic or not training)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    opts = tf.data.Options()
    opts.deterministic = bool(deterministic or not training)
    # FILE sharding needs at least as many shards as workers; small splits shard by element.
    opts.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE if len(files) >= 64
        else tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(opts)


def label_indices(summary: dict, findings=None) -> list[int] | None:
    """Positions of ``findings`` in the records' label vector (None: all, in stored order)."""
    if findings is None or list(findings) == summary["findings"]:
        return None
    missing = [f for f in findings if f not in summary["findings"]]
    if missing:
        raise CxrDataError(None, f"finding(s) {missing} not in the records' labels {summary['findings']}")
    return [summary["findings"].index(f) for f in findings]


def distribute(ds: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """Distribute a batched dataset over a strategy's replicas (global batch split per replica)."""
    return strategy.experimental_distribute_dataset(ds)


def read_examples(records_dir, split: str) -> tf.data.Dataset:
    """Parsed records of one split, unbatched and undecoded (for auditing and tests)."""
    files, count, summary = split_files(records_dir, split)
    spec = features_spec(len(summary["findings"]))
    ds = tf.data.TFRecordDataset(files).map(lambda s: tf.io.parse_single_example(s, spec))
    return ds.apply(tf.data.experimental.assert_cardinality(count))
