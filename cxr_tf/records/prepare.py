"""``cxr-tf prepare``: source layout -> manifest -> sharded TFRecords, ``manifest.csv``,
``boxes.csv``, ``masks.csv`` (datasets with masks), ``skipped.csv`` and ``summary.json`` in one records
directory.

The directory is trusted only once ``summary.json`` exists: it is removed first and written last,
and every shard and CSV is written atomically, so a killed run leaves nothing a later run (or
:mod:`cxr_tf.pipeline`) would trust, and a rerun produces the same result.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf import __version__, sources
from cxr_tf.core import atomic, cards
from cxr_tf.core.beam import RUNNERS, remove_stale, require as require_beam
from cxr_tf.sources import manifest as mf
from cxr_tf.core.errors import CxrConfigError, MissingImagesError
from cxr_tf.imaging import ASPECTS
from cxr_tf.records.integrity import finalize_summary
from cxr_tf.records.writer import ENCODINGS, SHARD_GLOB, ImageJob, shard_jobs, write_shards
from cxr_tf.records.reader import BOXES, MANIFEST, MASKS, SCHEMA_VERSION, SKIPPED, SUMMARY

log = logging.getLogger(__name__)
EXAMPLES = 20


def prepare(dataset: str, data_dir, out_dir, *, split: str = "official", size: int = 256,
            aspect: str = "pad", workers: int | None = None, allow_missing: bool = False,
            encoding: str = "png", images_per_shard: int = 512, seed: int | None = None,
            options: dict | None = None, training_workers: int = 1, runner: str = "pool",
            beam_options: dict | None = None) -> dict:
    """Prepare a dataset directory into a records directory and return its summary.

    Images listed but absent on disk, and images that cannot be decoded, raise an error naming
    them, unless ``allow_missing``: then they are skipped, counted and listed in ``skipped.csv``.
    ``options`` go to the source's ``load`` (see its ``OPTIONS``). Each split gets at least 8
    shards per ``training_workers`` (the workers of multi-worker training that will read it), and
    at most ``images_per_shard`` images per shard. ``runner``: ``pool`` (a process pool of
    ``workers``) or ``beam`` (an Apache Beam pipeline, :mod:`cxr_tf.records.beam`, with
    ``beam_options``); both write the same shards from the same plan and finish the same way.
    """
    if runner not in RUNNERS:
        raise CxrConfigError(f"unknown runner {runner!r}", key="runner", choices=RUNNERS)
    if runner == "beam":
        require_beam()
    for key, value, allowed in (("aspect", aspect, ASPECTS), ("encoding", encoding, ENCODINGS)):
        if value not in allowed:
            raise CxrConfigError(f"unknown {key} {value!r}", key=key, choices=allowed)
    if size < 8:
        raise CxrConfigError(f"must be at least 8 pixels, got {size}", key="size")
    source = sources.get(dataset)
    options = sources.check_options(source, options or {})
    src = source.load(data_dir, split=split, seed=seed, **options)
    if src.missing and not allow_missing:
        raise MissingImagesError(src.root, src.missing)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_tables(out, set(src.tables))
    (out / SUMMARY).unlink(missing_ok=True)          # untrusted until rewritten at the very end
    atomic.remove_partials(out)
    remove_stale(out)

    frame = src.manifest
    present = frame[~frame["image_id"].isin(set(src.missing))]
    jobs = _jobs(src, present, out, size=size, aspect=aspect, encoding=encoding, decode=dict(src.decode),
                 images_per_shard=images_per_shard, training_workers=training_workers, skip_bad=allow_missing,
                 seed=0 if seed is None else seed)
    if runner == "beam":
        from cxr_tf.records.beam import write_shards_beam
        results = write_shards_beam(jobs, out, options=beam_options, workers=workers, desc=f"prepare {dataset}")
    else:
        results = write_shards(jobs, workers, desc=f"prepare {dataset}")
    config = dict(dataset=dataset, split=split, seed=seed, size=size, aspect=aspect, encoding=encoding,
                  images_per_shard=images_per_shard, training_workers=training_workers, allow_missing=allow_missing,
                  options=options, runner=runner)
    return finalize(src, present, jobs, results, out, config)


def finalize(src, present: pd.DataFrame, jobs: list, results: list, out: Path, config: dict) -> dict:
    """After the shards of ``jobs`` are written (by any runner), with ``results`` one per image:
    remove stale shards, write manifest.csv, skipped.csv, boxes.csv, masks.csv, the side tables
    and, last, summary.json (which makes the directory trusted). Returns the summary."""
    frame = src.manifest
    written = {p.name for p in (Path(j.path) for j in jobs)}
    for stale in out.glob(SHARD_GLOB):
        if stale.name not in written:
            stale.unlink()

    res = pd.DataFrame([r.__dict__ for r in results]).set_index("image_id")
    shard_of = _positions(jobs, set(res.index[res["ok"]]))
    ok = res.index[res["ok"]]
    kept = present.set_index("image_id", drop=False).loc[ok]
    kept = kept.assign(
        orig_width=res.loc[ok, "orig_width"].astype(int).to_numpy(),
        orig_height=res.loc[ok, "orig_height"].astype(int).to_numpy(),
        shard=[shard_of[i][0] for i in ok], shard_index=[shard_of[i][1] for i in ok])
    kept = mf.order(kept.reset_index(drop=True), src.findings)
    kept = kept.sort_values(["split", "shard", "shard_index"], key=_split_key).reset_index(drop=True)
    mf.validate(kept, src.findings, where=out / "manifest.csv")

    bad = res[~res["ok"]].sort_index()       # in image order whichever runner finished them first
    skipped = pd.concat([
        pd.DataFrame({"image_id": src.missing, "reason": "file not found"}),
        pd.DataFrame({"image_id": bad.index, "reason": bad["reason"].to_numpy()}),
    ], ignore_index=True)
    skipped = skipped.merge(frame[["image_id", "path", "split"]], on="image_id", how="left")
    sizes = dict(zip(kept["image_id"], zip(kept["orig_width"], kept["orig_height"])))
    boxes = sources.boxes_in_pixels(src.boxes, sizes, src.bbox_frame)
    split_of = dict(zip(kept["image_id"], kept["split"]))
    boxes = boxes.assign(split=boxes["image_id"].map(split_of))
    masks = src.masks[src.masks["image_id"].isin(split_of.keys())]
    masks = masks.assign(split=masks["image_id"].map(split_of)).reset_index(drop=True)

    mf.write(kept, out / MANIFEST)
    atomic.write_csv(out / SKIPPED, skipped[["image_id", "path", "split", "reason"]])
    atomic.write_csv(out / BOXES, boxes)
    if len(src.masks):
        atomic.write_csv(out / MASKS, masks)
    else:
        (out / MASKS).unlink(missing_ok=True)
    for name, table in src.tables.items():       # side tables (e.g. reports), for the kept studies only
        if "study" in table:
            table = table[table["study"].isin(set(kept["study"].astype(str)))]
        atomic.write_csv(out / f"{name}.csv", table)
    summary = _summary(src, frame, kept, skipped, bad, boxes, masks, jobs, out, config)
    summary = finalize_summary(out, summary)       # shard sizes and checksums; the directory is now trusted
    log.info("prepared %d images into %s (%d missing, %d unreadable skipped)", len(kept), out,
             len(src.missing), len(bad))
    return summary


def _positions(jobs: list, ok: set) -> dict:
    """Image id -> (shard file, index of its record in the shard) of every written image: a
    skipped image has no record, so the images after it in its shard move up by one."""
    out = {}
    for j in jobs:
        k = 0
        for it in j.images:
            if it.image_id in ok:
                out[it.image_id] = (Path(j.path).name, k)
                k += 1
    return out


def _remove_stale_tables(out: Path, keep: set) -> None:
    """Delete the side tables an earlier prepare into ``out`` wrote that this one will not."""
    import json
    try:
        earlier = json.loads((out / SUMMARY).read_text()).get("tables", {})
    except (OSError, ValueError):
        return
    for name, file in earlier.items():
        if name not in keep:
            (out / Path(file).name).unlink(missing_ok=True)


def _split_key(col: pd.Series) -> pd.Series:
    """Sort splits as train, val, test; other columns as they are."""
    return col.map({s: i for i, s in enumerate(mf.SPLITS)}) if col.name == "split" else col


def _jobs(src, present: pd.DataFrame, out: Path, *, images_per_shard: int, seed: int, training_workers: int = 1,
          **options):
    """Shard jobs per split, images in a seed-determined shuffled order (so shards mix patients)."""
    vocab = {f: i for i, f in enumerate(src.findings)}
    by_image: dict[str, list] = {}
    for b in src.boxes.itertuples(index=False):
        by_image.setdefault(b.image_id, []).append((b.x, b.y, b.w, b.h, vocab[b.finding]))
    masks_of: dict[str, list] | None = {} if len(src.masks) else None
    for m in src.masks.itertuples(index=False):
        masks_of.setdefault(m.image_id, []).append((m.rle, vocab[m.finding]))
    labels = present[list(src.findings)].to_numpy(np.float32)
    jobs = []
    for split in mf.SPLITS:
        rows = np.flatnonzero(present["split"].to_numpy() == split)
        if not len(rows):
            continue
        rows = rows[np.random.default_rng([seed, mf.SPLITS.index(split)]).permutation(len(rows))]
        items = [ImageJob(present["image_id"].iat[r], str(src.root / present["path"].iat[r]),
                          str(present["view"].iat[r]), labels[r],
                          by_image.get(present["image_id"].iat[r], []),
                          None if masks_of is None else masks_of.get(present["image_id"].iat[r], []))
                 for r in rows]
        jobs += shard_jobs(split, items, out, images_per_shard, training_workers, bbox_frame=src.bbox_frame,
                           **options)
    return jobs


def _summary(src, listed, kept, skipped, bad, boxes, masks, jobs, out, config) -> dict:
    """The audit record of one prepare run."""
    card = cards.dataset_card(src.name)
    expected = card.get("expected", {})
    shards = {}
    for j in jobs:
        p = Path(j.path)
        if p.exists():
            shards[p.name] = int((kept["shard"] == p.name).sum())   # bytes, crc32c: finalize_summary
    return {
        "schema_version": SCHEMA_VERSION,
        "cxr_tf_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "data_dir": str(src.root),
        "files": src.files,
        "decode": dict(src.decode),
        "tables": {name: f"{name}.csv" for name in src.tables},
        "findings": list(src.findings),
        "bbox_frame": src.bbox_frame,
        "counts": {
            "listed_images": int(len(listed)),
            "listed_patients": int(listed["patient"].nunique()),
            "written_images": int(len(kept)),
            "missing_images": len(src.missing),
            "unreadable_images": int(len(bad)),
            "skipped_images": int(len(skipped)),
            "boxes": int(len(boxes)),
            "boxed_images": int(boxes["image_id"].nunique()),
            "masks": int(len(masks)),
            "masked_images": int(masks["image_id"].nunique()),
            "excluded_by_filter": dict(src.excluded),
        },
        "release_check": {k: {"expected": v, "listed": src.release_counts.get(k)}
                          for k, v in expected.items()},
        "splits": mf.split_summary(kept, src.findings),
        "labels": {f: int((kept[f] == 1).sum()) for f in src.findings},
        "views": {str(k): int(v) for k, v in kept["view"].value_counts().items()},
        "missing_examples": src.missing[:EXAMPLES],
        "unreadable": [{"image_id": i, "reason": r} for i, r in zip(bad.index, bad["reason"])],
        "shards": shards,
        "image_sizes": {i: [int(w), int(h)] for i, w, h in
                        zip(kept["image_id"], kept["orig_width"], kept["orig_height"])},
    }
