"""tf.data input pipeline over a records directory written by ``cxr-tf prepare``.

``make_dataset(records_dir, "train")`` reads the split's shards in parallel, decodes, augments
(training), resizes to the model's input size, maps label states to targets, batches and
prefetches. It ships compact batches: grayscale uint8 pixels, [B, H, W, 1], 12x fewer bytes than
normalized float32 RGB; the model casts and normalizes them itself (its first layers), so on a GPU
that work runs on the device.

Random augmentation uses stateless ops seeded per batch from ``tf.data.Dataset.random``, so with
``seed`` and ``deterministic=True`` two runs yield identical batches, and every epoch still differs.
The dataset works unchanged under ``tf.distribute`` strategies (``model.fit`` distributes it; or
use :func:`distribute`). With ``data_service``, the per-image work (reading, parsing, PNG/JPEG
decoding) runs on the workers of a tf.data service (:func:`start_dispatcher`, :func:`start_worker`,
``cxr-tf data-service``) in ``distributed_epoch`` mode: the dispatcher hands out the split's shard
files, so each image is decoded once per epoch by one worker; batching, augmentation and targets
stay on the trainer, so the batches are the in-process pipeline's in count, shape and targets
(their order differs from run to run).

TensorFlow reports a damaged shard as a ``DataLossError`` naming no file; :func:`shard_errors`
turns it into one error naming the shard (:mod:`cxr_tf.records.integrity`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import tensorflow as tf

import numpy as np

from cxr_tf.core.parallel import workers_in_tf_config
from cxr_tf.vocab.findings import IGNORE, LSR_RANGES, check_policies, policies, train_targets
from cxr_tf.records.integrity import corrupt_shard_error
from cxr_tf.records.reader import MIN_SHARDS_PER_WORKER, RecordsDir

log = logging.getLogger(__name__)
SERVICE_CHUNK = 32     # images per message from a tf.data service worker


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
    """The parsing spec of one record (see :mod:`cxr_tf.records.writer` for the schema)."""
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
    """The shard paths of one split, its image count, and the directory's summary."""
    records = RecordsDir(records_dir)
    files, count = records.shards(split)
    return files, count, records.summary


def targets(labels: tf.Tensor, uncertain="ignore", blank: str = "zeros", findings=None,
            seed: tf.Tensor | None = None, soft: tf.Tensor | None = None) -> tf.Tensor:
    """Label states [..., K] -> training targets, per finding, as
    :func:`cxr_tf.vocab.findings.train_targets` does in NumPy; with ``seed`` (training) the
    label-smoothed policies draw their uncertain targets per entry, and ``soft`` (same shape, NaN
    where absent) replaces the uncertain entries of ``selftrained`` findings."""
    check_policies(uncertain, blank)
    per = policies(uncertain, findings if findings is not None else [None] * labels.shape[-1])
    unc = tf.equal(labels, -1.0)
    fixed = tf.constant(train_targets(np.full((1, len(per)), -1.0, np.float32), uncertain, blank,
                                      findings if findings is not None else [None] * len(per))[0])
    out = tf.where(unc, fixed, labels)
    if seed is not None and any(p in LSR_RANGES for p in per):
        lo = tf.constant([LSR_RANGES.get(p, (0.0, 0.0))[0] for p in per], tf.float32)
        hi = tf.constant([LSR_RANGES.get(p, (0.0, 0.0))[1] for p in per], tf.float32)
        drawn = lo + tf.random.stateless_uniform(tf.shape(labels), seed + 7) * (hi - lo)
        out = tf.where(unc & tf.constant([p in LSR_RANGES for p in per]), drawn, out)
    if soft is not None:
        use = unc & tf.constant([p == "selftrained" for p in per]) & tf.math.is_finite(soft)
        out = tf.where(use, soft, out)
    return tf.where(tf.math.is_nan(out), IGNORE if blank == "ignore" else 0.0, out)


def _rotation_transforms(degrees: tf.Tensor, size: int) -> tf.Tensor:
    """Per-image projective transforms [B, 8] rotating about the image centre by ``degrees``."""
    a = degrees * (math.pi / 180.0)
    cos, sin = tf.cos(a), tf.sin(a)
    c = (size - 1) / 2.0
    zeros = tf.zeros_like(a)
    # output (x, y) samples input (cos*x - sin*y + tx, sin*x + cos*y + ty): rotation about centre
    return tf.stack([cos, -sin, c - cos * c + sin * c, sin, cos, c - sin * c - cos * c, zeros, zeros], axis=1)


def _to_dtype(out: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Pixels on 0..255 in ``dtype`` (uint8: rounded and saturated)."""
    if out.dtype == dtype:
        return out
    out = tf.clip_by_value(tf.cast(out, tf.float32), 0.0, 255.0)
    return tf.cast(tf.round(out) if dtype == tf.uint8 else out, dtype)


def _random_crop_transform(images: tf.Tensor, image_size: int, aug: Augment, seed: tf.Tensor) -> tf.Tensor:
    """Random square crop and flip as one ``crop_and_resize`` (a box with x1 > x2 samples the
    mirror image), then rotation and brightness/contrast; float32 out."""
    batch = tf.shape(images)[0]
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
            images=out, transforms=_rotation_transforms(deg, image_size), output_shape=[image_size, image_size],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    if aug.brightness or aug.contrast:  # x -> (x - 127.5) * gain + 127.5 + shift, per image
        gain = (1.0 + (u[:, 6] * 2.0 - 1.0) * aug.contrast)[:, None, None, None]
        shift = ((u[:, 5] * 2.0 - 1.0) * aug.brightness * 255.0)[:, None, None, None]
        out = out * gain + (127.5 * (1.0 - gain) + shift)
    return out


def preprocess_batch(images: tf.Tensor, image_size: int, augment: Augment | None = None,
                     seed: tf.Tensor | None = None, dtype=tf.uint8) -> tf.Tensor:
    """uint8 [B, S, S, 1] stored images -> [B, image_size, image_size, 1] pixels on 0..255 in
    ``dtype`` (uint8 by default, rounded; float32 keeps the resampled values).

    Vectorized over the batch and cheap by construction. Without augmentation (or ``seed``), the
    image is resized (antialiased when shrinking more than 2x), or passed through untouched when
    it already has the input size. A flip alone (CheXNet's augmentation) mirrors that image, with
    no resampling at all when the records are stored at the input size. A random crop, rotation,
    brightness or contrast go through :func:`_random_crop_transform` (one ``crop_and_resize`` for
    crop and flip together)."""
    dtype = tf.as_dtype(dtype)
    aug = augment if seed is not None else None
    if aug is not None and (aug.crop_scale or aug.rotation or aug.brightness or aug.contrast):
        out = _random_crop_transform(images, image_size, aug, seed)
        return _to_dtype(tf.ensure_shape(out, [None, image_size, image_size, 1]), dtype)
    if images.shape[1] == image_size:
        out = images
    else:
        out = _to_dtype(tf.image.resize(tf.cast(images, tf.float32), [image_size, image_size],
                                        antialias=images.shape[1] is None or image_size * 2 < images.shape[1]),
                        tf.uint8 if dtype == tf.uint8 else tf.float32)
    if aug is not None and aug.hflip:
        out = _mirror(out, tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5)
    return _to_dtype(tf.ensure_shape(out, [None, image_size, image_size, 1]), dtype)


def _mirror(images: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """[B, H, W, C] images with those where ``flip`` [B] is True mirrored left-right. One-channel
    batches are reversed as [B, H, W] (a 4-D reverse over a channel of 1 took 3x as long) and
    chosen per image by ``Select``'s row form (``tf.where`` broadcasts ``flip`` over every pixel):
    together 1.6 ms instead of 3.2 ms for 16 images of 224 px, about a tenth of decoding them."""
    if images.shape[-1] != 1:
        return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    shape = tf.shape(images)
    rows = tf.reshape(images, shape[:3])
    return tf.reshape(tf.raw_ops.Select(condition=flip, x=tf.reverse(rows, axis=[2]), y=rows), shape)


def make_dataset(records_dir, split: str, *, batch_size: int = 16, image_size: int = 224,
                 training: bool | None = None, augment: Augment | None = Augment(),
                 uncertain: str = "ignore", blank: str = "zeros", shuffle_buffer: int = 2048,
                 seed: int | None = None, deterministic: bool = False, repeat: bool = False,
                 drop_remainder: bool = False, include_meta: bool = False, findings=None,
                 dtype=tf.uint8, soft_targets=None, data_service: str | None = None,
                 workers: int | None = None) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data.Dataset`` of ``(pixels, targets)`` for one split, pixels
    [B, image_size, image_size, 1] on 0..255 in ``dtype`` (what a cxr_tf model takes).

    ``training`` (default: ``split == "train"``) shuffles and augments; evaluation resizes only and
    yields images in :meth:`RecordsDir.split_frame` order (the split's rows of ``manifest.csv``).
    ``include_meta`` adds a third element: a dict with ``image_id``, ``view``, ``orig_size`` and
    ``affine`` (for mapping heatmaps back to original pixels). ``batch_size`` is the global batch
    size under a distribution strategy. ``findings`` selects (and orders) label columns by name,
    e.g. the 8 ChestX-ray8 findings out of 14. ``uncertain`` is a policy name or a per-finding
    mapping (:mod:`cxr_tf.vocab.findings`); ``soft_targets`` (a DataFrame indexed by image_id with one
    column per finding, NaN where absent) gives the ``selftrained`` findings' soft targets.
    Images are decoded per element; resizing, augmentation and targets run per batch.
    ``data_service`` (a dispatcher address, ``host:port``): decode on that tf.data service's
    workers (see the module doc). ``workers``: the training workers that will shard this dataset
    (default: those in ``TF_CONFIG``); with fewer than 8 shards per worker it is sharded by
    element rather than by file, and a warning says why.
    """
    records = RecordsDir(records_dir)
    files, count = records.shards(split)
    select = records.label_indices(findings)
    names = list(findings) if findings is not None else records.findings
    check_policies(uncertain, blank, names)
    stored = records.stored_size
    png = records.encoding == "png"
    training = split == "train" if training is None else training
    spec = features_spec(len(records.findings))
    if not include_meta:  # parse only what training needs
        spec = {k: spec[k] for k in ("image", "labels") + (("image_id",) if soft_targets is not None else ())}
    soft = _soft_lookup(soft_targets, names)
    aug = augment if training else None
    ordered = bool(deterministic or not training)
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        files_ds = files_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    # evaluation reads shards one after another: batches follow manifest.csv order (split_frame)
    ds = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16) if training else 1,
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    if not data_service:   # (a service worker reads only some of the shards)
        ds = ds.apply(tf.data.experimental.assert_cardinality(count))
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(min(shuffle_buffer, count), seed=seed, reshuffle_each_iteration=True)
    if repeat and not data_service:
        ds = ds.repeat()

    def _decode(serialized):   # per element: only what cannot be batched
        ex = tf.io.parse_single_example(serialized, spec)
        image = tf.io.decode_png(ex["image"], channels=1) if png else tf.io.decode_jpeg(ex["image"], channels=1)
        image = tf.ensure_shape(image, [stored, stored, 1])
        labels = ex["labels"] if soft is None else (ex["labels"], ex["image_id"])
        if not include_meta:
            return image, labels
        return image, labels, {k: ex[k] for k in ("image_id", "view", "orig_size", "affine")}

    def _batch(element, batch_seed=None):   # per batch, vectorized: resize/augment and the targets
        labels, ids = element[1] if soft is not None else (element[1], None)
        if select is not None:
            labels = tf.gather(labels, select, axis=1)
        y = targets(labels, uncertain, blank, names, batch_seed if aug is not None else None,
                    None if soft is None else soft(ids))
        return (preprocess_batch(element[0], image_size, aug, batch_seed, dtype), y, *element[2:])

    ds = ds.map(_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    if data_service:   # everything above runs on the service's workers, one shard file per split
        # shipped in chunks (one message each, not one per image), then unbatched: the trainer
        # batches the one stream, so partial chunks at each worker's end cost no image and no batch
        ds = ds.batch(SERVICE_CHUNK).apply(tf.data.experimental.service.distribute(
            processing_mode="distributed_epoch", service=service_address(data_service))).unbatch()
        ds = ds.apply(tf.data.experimental.assert_cardinality(count))   # each image exactly once
        if repeat:
            ds = ds.repeat()   # a new service job (a new distributed epoch) per pass
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if aug is not None:
        rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, rand))
        ds = ds.map(_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    else:
        ds = ds.map(lambda *element: _batch(element), num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    opts = tf.data.Options()
    opts.deterministic = ordered
    opts.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if data_service else shard_policy(split, len(files), workers))
    return ds.with_options(opts)


def shard_policy(split: str, files: int, workers: int | None = None):
    """How MultiWorkerMirroredStrategy shards a split's dataset over ``workers`` (default: those
    in ``TF_CONFIG``): by FILE with at least 8 shard files per worker, so each worker reads only
    its own files and the shares differ by one file at most; otherwise by DATA, which is correct
    for any number of files (each worker keeps every n-th record) but makes every worker read and
    decode every record, so under several workers a warning names the fix."""
    workers = max(1, workers_in_tf_config() if workers is None else workers)
    if files >= MIN_SHARDS_PER_WORKER * workers:
        return tf.data.experimental.AutoShardPolicy.FILE
    if workers > 1:
        log.warning("the %s split has %d shard file(s) for %d training workers (fewer than %d per worker): "
                    "sharding by record, so every worker reads and decodes every image; prepare the records "
                    "with --training-workers %d to shard by file", split, files, workers, MIN_SHARDS_PER_WORKER,
                    workers)
    return tf.data.experimental.AutoShardPolicy.DATA


def _soft_lookup(soft_targets, names):
    """A function image_id [B] -> soft targets [B, K] (NaN where an image has none), or None."""
    if soft_targets is None:
        return None
    table = soft_targets.reindex(columns=names)
    keys = tf.constant(table.index.astype(str).to_numpy())
    rows = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        keys, tf.range(len(table), dtype=tf.int64)), default_value=len(table))
    values = tf.constant(np.vstack([table.to_numpy(np.float32), np.full((1, len(names)), np.nan, np.float32)]))
    return lambda ids: tf.gather(values, rows.lookup(ids))


def split_frame(records_dir, split: str):
    """The rows of ``manifest.csv`` for one split, in the order an evaluation dataset yields them."""
    return RecordsDir(records_dir).split_frame(split)


def distribute(ds: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """Distribute a batched dataset over a strategy's replicas (global batch split per replica)."""
    return strategy.experimental_distribute_dataset(ds)


@contextlib.contextmanager
def shard_errors(records_dir, splits=("train", "val")):
    """Around code that iterates datasets of ``splits``: a corrupt or truncated record
    (TensorFlow's ``DataLossError``, which names no file) becomes one
    :class:`~cxr_tf.core.errors.CxrDataError` naming the bad shard, found by its checksum, and
    the fix."""
    try:
        yield
    except tf.errors.DataLossError as exc:
        raise corrupt_shard_error(records_dir, list(splits), exc.message) from None


def service_address(address: str) -> str:
    """A dispatcher address as the tf.data service takes it: ``host:port`` -> ``grpc://host:port``."""
    return address if "://" in address else f"grpc://{address}"


def start_dispatcher(port: int = 0, work_dir: str | None = None):
    """A tf.data service dispatcher on ``port`` (0: any free port); returns the server (its
    ``target`` is the address to give ``--data-service``). ``work_dir`` makes it fault tolerant:
    it journals its state there and resumes from it after a restart."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, worker_address: str | None = None):
    """A tf.data service worker serving ``dispatcher`` (``host:port``) on ``port``;
    ``worker_address`` is how the trainers reach it (default ``localhost:<port>``: set it to this
    host's name when trainers run elsewhere). The worker reads the shards by the paths the trainer
    gives, so they must be at the same path (or bucket URL) on every worker."""
    kwargs = {"worker_address": worker_address} if worker_address else {}
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher.split("://")[-1], port=port, **kwargs)
    return tf.data.experimental.service.WorkerServer(config)


def read_examples(records_dir, split: str) -> tf.data.Dataset:
    """Parsed records of one split, unbatched and undecoded (for auditing and tests)."""
    records = RecordsDir(records_dir)
    files, count = records.shards(split)
    spec = features_spec(len(records.findings))
    ds = tf.data.TFRecordDataset(files).map(lambda s: tf.io.parse_single_example(s, spec))
    return ds.apply(tf.data.experimental.assert_cardinality(count))
