"""Sharded TFRecords: the schema, and parallel, atomic writing (no TensorFlow here).

One ``tf.train.Example`` per image, with features:

==============  =========  ==========================================================
``image``       bytes      grayscale PNG (default) or JPEG of the resized image
``image_id``    bytes      the dataset's image identifier (file name)
``view``        bytes      view position (PA, AP, ...)
``labels``      float[K]   1 / 0 / -1, NaN for blank, in the vocabulary's order
``orig_size``   int64[2]   width, height of the decoded source file, in pixels
``affine``      float[4]   sx, sy, tx, ty: stored = original * s + t (see imaging.geometry)
``boxes``       float[4n]  x, y, w, h of each ground-truth box, in original pixels
``box_labels``  int64[n]   vocabulary index of each box
``mask_rle``    bytes[m]   each ground-truth mask, canonical run-length text over the original
                           pixels (:mod:`cxr_tf.imaging.masks`); schema 2, only when the dataset
                           has masks
``mask_labels`` int64[m]   vocabulary index of each mask (schema 2, with ``mask_rle``)
==============  =========  ==========================================================

Shards are ``{split}-{i:05d}-of-{n:05d}.tfrecord``; each is written to a ``.partial-<pid>`` file and
renamed only when complete. :mod:`cxr_tf.pipeline` reads them with TensorFlow.
"""

from __future__ import annotations

import io
import logging
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_tf.core import atomic
from cxr_tf.records import tfrecord
from cxr_tf.records.reader import MIN_SHARDS_PER_WORKER
from cxr_tf.core.errors import CxrConfigError, CxrImageError
from cxr_tf.imaging import decode_file, fit, frame_to_pixels
from cxr_tf.core.progress import progress
from cxr_tf.core.parallel import mp_context

log = logging.getLogger(__name__)
ENCODINGS = ("png", "jpeg")
SHARD_GLOB = "*-?????-of-?????.tfrecord"
# MultiWorkerMirroredStrategy shards a dataset by file: with at least this many shards per training
# worker, each worker gets a near-equal share (one shard more at most); prepare's --training-workers.


def shard_name(split: str, index: int, count: int) -> str:
    """File name of one shard."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


@dataclass
class ImageJob:
    """One image to write: where it is and what goes with it."""

    image_id: str
    path: str
    view: str
    labels: np.ndarray
    boxes: list = field(default_factory=list)      # [(x, y, w, h, label_index)] in the box frame
    masks: list | None = None                      # [(rle, label_index)]; None: the dataset has no masks


@dataclass
class ShardJob:
    """One shard: its final path and its images, plus how to store them."""

    path: str
    images: list
    size: int
    aspect: str = "pad"
    encoding: str = "png"
    quality: int = 95
    bbox_frame: float | None = None
    skip_bad: bool = False
    decode: dict = field(default_factory=dict)     # DICOM display options (e.g. recipe="mimic-jpg")


@dataclass
class ImageResult:
    """What happened to one image: written (with its geometry) or skipped/failed (with why)."""

    image_id: str
    ok: bool
    reason: str = ""
    orig_width: int = 0
    orig_height: int = 0
    affine: tuple = ()


def encode(pixels: np.ndarray, encoding: str = "png", quality: int = 95) -> bytes:
    """Encode a 2-D uint8 array as grayscale PNG or JPEG bytes."""
    buf = io.BytesIO()
    img = Image.fromarray(pixels, mode="L") if pixels.dtype == np.uint8 else Image.fromarray(pixels)
    if encoding == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif encoding == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    else:
        raise CxrConfigError(f"unknown encoding {encoding!r}", key="encoding", choices=ENCODINGS)
    return buf.getvalue()


def _example(job: ShardJob, item: ImageJob) -> tuple[bytes, ImageResult]:
    """Decode, resize and serialize one image; raises CxrImageError for a bad file."""
    pixels = decode_file(item.path, **job.decode)
    h, w = pixels.shape
    stored, aff = fit(pixels, job.size, job.aspect)
    boxes = np.zeros((0, 4), np.float32)
    labels = np.zeros((0,), np.int64)
    if item.boxes:
        arr = np.asarray(item.boxes, dtype=np.float64)
        xywh = frame_to_pixels(arr[:, :4], w, h, job.bbox_frame) if job.bbox_frame else arr[:, :4]
        boxes, labels = xywh.astype(np.float32), arr[:, 4].astype(np.int64)
    features = {
        "image": encode(stored, job.encoding, job.quality),
        "image_id": item.image_id,
        "view": item.view or "",
        "labels": np.asarray(item.labels, np.float32),
        "orig_size": np.array([w, h], np.int64),
        "affine": np.array([aff.sx, aff.sy, aff.tx, aff.ty], np.float32),
        "boxes": boxes.ravel(),
        "box_labels": labels,
    }
    if item.masks is not None:
        features["mask_rle"] = [rle for rle, _ in item.masks]
        features["mask_labels"] = np.array([k for _, k in item.masks], np.int64)
    record = tfrecord.serialize_example(features)
    return record, ImageResult(item.image_id, True, "", w, h, (aff.sx, aff.sy, aff.tx, aff.ty))


def encode_image(job: ShardJob, item: ImageJob) -> tuple[bytes | None, ImageResult]:
    """One image of a shard: its serialized example and result, or ``None`` and the failed result
    naming the file and the problem (every runner, pool or Beam, goes through here)."""
    try:
        return _example(job, item)
    except CxrImageError as exc:
        return None, ImageResult(item.image_id, False, f"{exc.path}: {exc.problem}")


_TICKS = None


def _init_worker(ticks) -> None:
    """Pool initializer: keep the progress queue; quiet TensorFlow if a plugin imports it."""
    global _TICKS
    _TICKS = ticks
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_shard(job: ShardJob) -> list[ImageResult]:
    """Write one shard atomically. A bad image is skipped (``skip_bad``) or stops the shard, which
    is then not written; either way it is reported in the results, never dropped silently."""
    results, records = [], []
    for item in job.images:
        rec, res = encode_image(job, item)
        if rec is not None:
            records.append(rec)
        elif not job.skip_bad:
            results.append(res)
            return results
        results.append(res)
        if _TICKS is not None:
            _TICKS.put(1)
    with atomic.atomic_path(job.path) as tmp:
        tfrecord.write_records(tmp, records)
    return results


def write_shards(jobs: list[ShardJob], workers: int | None = None, desc: str = "writing shards"
                 ) -> list[ImageResult]:
    """Write shards in parallel over ``workers`` processes (default: all cores), with a progress
    bar. Returns one result per image; with ``skip_bad`` False, stops at the first bad image and
    raises :class:`CxrImageError` naming it."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    total = sum(len(j.images) for j in jobs)
    results: list[ImageResult] = []
    with progress(total=total, desc=desc, unit="img") as bar:
        if workers == 1:
            for job in jobs:
                res = write_shard(job)
                results += res
                bar.update(len(res))
                raise_first_failure(res, job)
            return results
        ctx = mp_context()
        ticks = ctx.Manager().Queue() if ctx.get_start_method() == "spawn" else ctx.Queue()
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(ticks,)) as pool:
            pending = {pool.submit(write_shard, job): job for job in jobs}
            try:
                while pending:
                    done, _ = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                    _drain(ticks, bar)
                    for fut in done:
                        job = pending.pop(fut)
                        res = fut.result()
                        results += res
                        raise_first_failure(res, job)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
            _drain(ticks, bar)
    return results


def _drain(ticks, bar) -> None:
    """Move worker progress ticks onto the bar."""
    n = 0
    try:
        while True:
            n += ticks.get_nowait()
    except Exception:  # queue.Empty, from either queue flavour
        pass
    if n:
        bar.update(n)


def raise_first_failure(results: list[ImageResult], job: ShardJob) -> None:
    """Without ``skip_bad``, raise :class:`CxrImageError` for the first failed image of ``job``."""
    if not job.skip_bad:
        for r in results:
            if not r.ok:
                path, _, problem = r.reason.partition(": ")
                raise CxrImageError(path, f"{problem} (use --allow-missing to skip bad images; "
                                          "they are counted and reported)")


def shard_count(images: int, images_per_shard: int, training_workers: int = 1) -> int:
    """Shards of a split of ``images``: at most ``images_per_shard`` each, and at least
    :data:`MIN_SHARDS_PER_WORKER` per training worker (never more shards than images)."""
    for key, value in (("images_per_shard", images_per_shard), ("training_workers", training_workers)):
        if value < 1:
            raise CxrConfigError(f"must be at least 1, got {value}", key=key)
    wanted = min(MIN_SHARDS_PER_WORKER * training_workers, images)
    return max(1, -(-images // images_per_shard), wanted)


def shard_jobs(split: str, images: list[ImageJob], out_dir: Path, images_per_shard: int,
               training_workers: int = 1, **options) -> list[ShardJob]:
    """Cut one split's images, in the given order, into :func:`shard_count` shard jobs of
    near-equal size."""
    count = shard_count(len(images), images_per_shard, training_workers)
    bounds = np.linspace(0, len(images), count + 1).round().astype(int)
    return [ShardJob(str(out_dir / shard_name(split, i, count)), images[a:b], **options)
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
