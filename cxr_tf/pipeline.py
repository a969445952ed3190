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


def _rotation_transforms(degrees: tf.Tensor, size: int) -> tf.Tensor:
    """Per-image projective transforms [B, 8] rotating about the image centre by ``degrees``."""
    a = degrees * (math.pi / 180.0)
    cos, sin = tf.cos(a), tf.sin(a)
    c = (size - 1) / 2.0
    zeros = tf.zeros_like(a)
    # output (x, y) samples input (cos*x - sin*y + tx, sin*x + cos*y + ty): rotation about centre
    return tf.stack([cos, -sin, c - cos * c + sin * c, sin, cos, c - sin * c - cos * c, zeros, zeros], axis=1)


def preprocess_batch(images: tf.Tensor, image_size: int, augment: Augment | None = None,
                     seed: tf.Tensor | None = None, channels: int = 3,
                     normalization: str = "imagenet") -> tf.Tensor:
    """uint8 [B, S, S, 1] stored images -> float32 [B, image_size, image_size, channels].

    Vectorized over the batch and cheap by construction: with ``augment`` and a ``seed``
    (int64[2], one per batch), the random crop *and* the horizontal flip are one
    ``crop_and_resize`` (a box with x1 > x2 samples the mirror image); brightness and contrast are
    folded into the final normalizing multiply-add, which also expands to three channels.
    Without augmentation, the image is resized (antialiased when shrinking more than 2x)."""
    batch = tf.shape(images)[0]
    stored = images.shape[1]
    aug = augment if seed is not None else None
    gain = offset = None
    if aug is None:
        if stored == image_size:
            out = tf.cast(images, tf.float32)
        else:
            out = tf.image.resize(tf.cast(images, tf.float32), [image_size, image_size],
                                  antialias=stored is None or image_size * 2 < stored)
    else:
        u = tf.random.stateless_uniform([batch, 7], seed)
        side = tf.sqrt(aug.crop_scale[0] + u[:, 0] * (aug.crop_scale[1] - aug.crop_scale[0])) \
            if aug.crop_scale else tf.ones([batch])
        y0, x0 = u[:, 1] * (1.0 - side), u[:, 2] * (1.0 - side)
        x1 = x0 + side
        if aug.hflip:
            flip = u[:, 4] < 0.5
            x0, x1 = tf.where(flip, x1, x0), tf.where(flip, x0, x1)
        boxes = tf.stack([y0, x0, y0 + side, x1], axis=1)
        out = tf.image.crop_and_resize(images, boxes, tf.range(batch), [image_size, image_size])
        if aug.rotation:
            deg = (u[:, 3] * 2.0 - 1.0) * aug.rotation
            out = tf.raw_ops.ImageProjectiveTransformV3(
                images=out, transforms=_rotation_transforms(deg, image_size),
                output_shape=[image_size, image_size], fill_value=0.0, interpolation="BILINEAR",
                fill_mode="CONSTANT")
        if aug.brightness or aug.contrast:  # x -> (x - 127.5) * gain + 127.5 + shift, per image
            gain = (1.0 + (u[:, 6] * 2.0 - 1.0) * aug.contrast)[:, None, None, None]
            offset = 127.5 * (1.0 - gain) + ((u[:, 5] * 2.0 - 1.0) * aug.brightness * 255.0)[:, None, None, None]
    out = tf.ensure_shape(out, [None, image_size, image_size, 1])
    if gain is not None:
        out = tf.clip_by_value(out * gain + offset, 0.0, 255.0)
    if channels == 1:
        return out / 255.0
    return normalize_gray(out, normalization)


def normalize_gray(gray255: tf.Tensor, normalization: str = "imagenet") -> tf.Tensor:
    """[B, H, W, 1] grayscale on 0..255 -> normalized [B, H, W, 3], as :func:`normalize` would do
    on the gray image repeated over three channels.

    Every supported normalization is a per-channel affine map of a gray value, so it runs as one
    1x1 convolution + bias (a single fused pass: about 7x faster on CPU than a broadcasting
    multiply-add to three channels). The coefficients come from :func:`normalize` itself."""
    ends = normalize(tf.constant([[[[0.0] * 3]], [[[1.0] * 3]]]), normalization)  # gray 0 and 255
    bias = tf.reshape(ends[0], [3])
    kernel = tf.reshape((ends[1] - ends[0]) / 255.0, [1, 1, 1, 3])
    return tf.nn.bias_add(tf.nn.conv2d(gray255, kernel, strides=1, padding="VALID"), bias)


def make_dataset(records_dir, split: str, *, batch_size: int = 16, image_size: int = 224,
                 training: bool | None = None, augment: Augment | None = Augment(),
                 normalization: str = "imagenet", uncertain: str = "ignore", blank: str = "zeros",
                 shuffle_buffer: int = 2048, seed: int | None = None, deterministic: bool = False,
                 repeat: bool = False, drop_remainder: bool = False, include_meta: bool = False,
                 channels: int = 3, findings=None) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(images, targets)`` for one split.

    ``training`` (default: ``split == "train"``) shuffles and augments; evaluation resizes only and
    yields images in :func:`split_frame` order (the split's rows of ``manifest.csv``). ``include_meta`` adds a third element: a dict with ``image_id``, ``view``,
    ``orig_size`` and ``affine`` (for mapping heatmaps back to original pixels).
    ``batch_size`` is the global batch size under a distribution strategy. ``findings`` selects
    (and orders) label columns by name, e.g. the 8 ChestX-ray8 findings out of 14.
    Images are decoded per element; resizing, augmentation and normalization run per batch.
    """
    files, count, summary = split_files(records_dir, split)
    select = label_indices(summary, findings)
    stored = int(summary["config"]["size"])
    training = split == "train" if training is None else training
    spec = features_spec(len(summary["findings"]))
    if not include_meta:  # parse only what training needs
        spec = {k: spec[k] for k in ("image", "labels")}
    aug = augment if training else None
    ordered = bool(deterministic or not training)
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    # evaluation reads shards one after another: batches follow manifest.csv order (split_frame)
    ds = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16) if training else 1,
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    ds = ds.apply(tf.data.experimental.assert_cardinality(count))
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(min(shuffle_buffer, count), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def _decode(serialized):
        ex = tf.io.parse_single_example(serialized, spec)
        image = tf.io.decode_png(ex["image"], channels=1) if summary["config"].get(
            "encoding", "png") == "png" else tf.io.decode_jpeg(ex["image"], channels=1)
        image = tf.ensure_shape(image, [stored, stored, 1])
        y = targets(ex["labels"], uncertain, blank)
        if select is not None:
            y = tf.gather(y, select)
        if not include_meta:
            return image, y
        return image, y, {k: ex[k] for k in ("image_id", "view", "orig_size", "affine")}

    ds = ds.map(_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def _batch(element, batch_seed):
        x = preprocess_batch(element[0], image_size, aug, batch_seed if aug else None, channels,
                             normalization)
        return (x, *element[1:])

    ds = tf.data.Dataset.zip((ds, rand)).map(_batch, num_parallel_calls=tf.data.AUTOTUNE,
                                             deterministic=ordered)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    opts = tf.data.Options()
    opts.deterministic = ordered
    # FILE sharding needs at least as many shards as workers; small splits shard by element.
    opts.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE if len(files) >= 64
        else tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(opts)


def split_frame(records_dir, split: str):
    """The rows of ``manifest.csv`` for one split, in the order an evaluation dataset yields them."""
    import pandas as pd

    man = pd.read_csv(Path(records_dir) / "manifest.csv", dtype={"patient": str, "image_id": str})
    part = man[man["split"] == split]
    return part.sort_values(["shard", "shard_index"], kind="stable").reset_index(drop=True)


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
