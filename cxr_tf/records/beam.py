"""``cxr-tf prepare --runner beam``: the shard jobs of a prepare run written by an Apache Beam
pipeline instead of a process pool.

The driver plans the run exactly as the pool path does (source -> manifest -> shard jobs: the same
shards, the same images in the same order) and finishes it the same way
(:func:`cxr_tf.records.prepare.finalize`). In between, Beam does the work:

    shard indices -> (shard, image) pairs -> reshuffle -> decode, resize, encode one image
    (:func:`cxr_tf.records.writer.encode_image`, the pool's function) -> group by shard ->
    write the shard and its per-image results

Everything is written into a work folder inside the records directory (``.beam-tmp-*``); only
after the pipeline has finished, and every shard has reported, are the shards moved into place.
``summary.json`` was removed before and is written last, so a killed job leaves nothing that
``train`` trusts, and a rerun removes the work folder and starts over.

The shard plan is the pool's, so shard boundaries are the same as with ``--runner pool`` for the
same options; do not rely on that (the records format does not).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from cxr_tf.core import beam as cb
from cxr_tf.core.errors import CxrDataError
from cxr_tf.records import tfrecord
from cxr_tf.records.writer import ImageResult, ShardJob, encode_image, raise_first_failure
from cxr_tf.core import atomic

log = logging.getLogger(__name__)


def write_shards_beam(jobs: list[ShardJob], out: Path, *, options: dict | None = None, workers: int | None = None,
                      desc: str = "writing shards") -> list[ImageResult]:
    """Write every shard of ``jobs`` with a Beam pipeline (``options``: Beam pipeline options;
    default the multi-process DirectRunner with ``workers`` processes). Returns one result per
    image, like :func:`cxr_tf.records.writer.write_shards`; without ``skip_bad`` a bad image
    raises :class:`CxrImageError` naming it and no shard is moved into place."""
    beam = cb.require()
    out = Path(out)
    tmp = cb.temp_dir(out)
    jobs_file = cb.save_pickle(jobs, tmp / "jobs.pkl")
    sizes = [len(j.images) for j in jobs]

    def build(p):
        (p
         | "shards" >> beam.Create(list(range(len(jobs))))
         | "images" >> beam.FlatMap(lambda j: [(j, k) for k in range(sizes[j])])
         | "spread" >> beam.Reshuffle()
         | "encode" >> beam.Map(_encode, jobs_file)
         | "by shard" >> beam.GroupByKey()
         | "write" >> beam.Map(_write_shard, jobs_file, str(tmp)))

    try:
        cb.run(build, tmp, options=options, workers=workers, total=sum(sizes), desc=desc)
        rows = cb.read_parts(tmp)
        by_shard: dict[int, list] = {}
        for j, k, result in rows:
            by_shard.setdefault(j, []).append((k, ImageResult(**{**result, "affine": tuple(result["affine"])})))
        results = []
        for j, job in enumerate(jobs):
            got = [r for _, r in sorted(by_shard.get(j, []), key=lambda kr: kr[0])]
            if len(got) != len(job.images):
                raise CxrDataError(job.path, f"the Beam pipeline reported {len(got)} of {len(job.images)} "
                                             "images of this shard; run prepare again")
            raise_first_failure(got, job)
            results += got
        for job in jobs:
            name = Path(job.path).name
            if not (tmp / name).is_file():
                raise CxrDataError(tmp / name, "the Beam pipeline did not write this shard; run prepare again")
        for job in jobs:
            os.replace(tmp / Path(job.path).name, job.path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("Beam wrote %d shards (%d images)", len(jobs), len(results))
    return results


def _encode(pair, jobs_file: str):
    """Beam step: one image -> (shard index, (image index, record or None, result))."""
    j, k = pair
    job = cb.load_pickle(jobs_file)[j]
    record, result = encode_image(job, job.images[k])
    return j, (k, record, asdict(result))


def _write_shard(group, jobs_file: str, tmp: str) -> int:
    """Beam step: one shard's encoded images -> the shard file (records in plan order) and one
    part file of per-image results, both in the work folder."""
    j, items = group
    job = cb.load_pickle(jobs_file)[j]
    items = sorted(items, key=lambda item: item[0])
    records = [rec for _, rec, _ in items if rec is not None]
    if len(records) == len(items) or job.skip_bad:
        with atomic.atomic_path(Path(tmp) / Path(job.path).name) as part:
            tfrecord.write_records(part, records)
    return cb.write_part([[j, k, result] for k, _, result in items], tmp, tag=f"shard{j:06d}")
