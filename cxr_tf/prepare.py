"""``cxr-tf prepare``: source layout -> manifest -> sharded TFRecords, ``manifest.csv``,
``boxes.csv``, ``skipped.csv`` and ``summary.json`` in one records directory.

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

from cxr_tf import __version__, atomic, cards, manifest as mf, sources
from cxr_tf.errors import CxrDataError, MissingImagesError
from cxr_tf.imaging import ASPECTS
from cxr_tf.records import ENCODINGS, SHARD_GLOB, ImageJob, shard_jobs, write_shards

log = logging.getLogger(__name__)
SUMMARY = "summary.json"
EXAMPLES = 20


def prepare(dataset: str, data_dir, out_dir, *, split: str = "official", size: int = 256,
            aspect: str = "pad", workers: int | None = None, allow_missing: bool = False,
            encoding: str = "png", images_per_shard: int = 512, seed: int | None = None) -> dict:
    """Prepare a dataset directory into a records directory and return its summary.

    Images listed but absent on disk, and images that cannot be decoded, raise an error naming
    them, unless ``allow_missing``: then they are skipped, counted and listed in ``skipped.csv``.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    src = sources.get(dataset).load(data_dir, split=split, seed=seed)
    if src.missing and not allow_missing:
        raise MissingImagesError(src.root, src.missing)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).unlink(missing_ok=True)          # untrusted until rewritten at the very end
    atomic.remove_partials(out)

    frame = src.manifest
    present = frame[~frame["image_id"].isin(set(src.missing))]
    jobs = _jobs(src, present, out, size=size, aspect=aspect, encoding=encoding,
                 images_per_shard=images_per_shard, skip_bad=allow_missing,
                 seed=0 if seed is None else seed)
    results = write_shards(jobs, workers, desc=f"prepare {dataset}")
    written = {p.name for p in (Path(j.path) for j in jobs)}
    for stale in out.glob(SHARD_GLOB):
        if stale.name not in written:
            stale.unlink()

    res = pd.DataFrame([r.__dict__ for r in results]).set_index("image_id")
    shard_of = {it.image_id: (Path(j.path).name, k) for j in jobs for k, it in enumerate(j.images)}
    ok = res.index[res["ok"]]
    kept = present.set_index("image_id", drop=False).loc[ok]
    kept = kept.assign(
        orig_width=res.loc[ok, "orig_width"].astype(int).to_numpy(),
        orig_height=res.loc[ok, "orig_height"].astype(int).to_numpy(),
        shard=[shard_of[i][0] for i in ok], shard_index=[shard_of[i][1] for i in ok])
    kept = mf.order(kept.reset_index(drop=True), src.findings)
    kept = kept.sort_values(["split", "shard", "shard_index"], key=_split_key).reset_index(drop=True)
    mf.validate(kept, src.findings, where=out / "manifest.csv")

    bad = res[~res["ok"]]
    skipped = pd.concat([
        pd.DataFrame({"image_id": src.missing, "reason": "file not found"}),
        pd.DataFrame({"image_id": bad.index, "reason": bad["reason"].to_numpy()}),
    ], ignore_index=True)
    skipped = skipped.merge(frame[["image_id", "path", "split"]], on="image_id", how="left")
    boxes = _boxes_in_pixels(src, kept)

    mf.write(kept, out / "manifest.csv")
    atomic.write_csv(out / "skipped.csv", skipped[["image_id", "path", "split", "reason"]])
    atomic.write_csv(out / "boxes.csv", boxes)
    summary = _summary(src, frame, kept, skipped, bad, boxes, jobs, out, dict(
        dataset=dataset, split=split, seed=seed, size=size, aspect=aspect, encoding=encoding,
        images_per_shard=images_per_shard, allow_missing=allow_missing))
    atomic.write_json(out / SUMMARY, summary)
    log.info("prepared %d images into %s (%d missing, %d unreadable skipped)", len(kept), out,
             len(src.missing), len(bad))
    return summary


def _split_key(col: pd.Series) -> pd.Series:
    """Sort splits as train, val, test; other columns as they are."""
    return col.map({s: i for i, s in enumerate(mf.SPLITS)}) if col.name == "split" else col


def _jobs(src, present: pd.DataFrame, out: Path, *, images_per_shard: int, seed: int, **options):
    """Shard jobs per split, images in a seed-determined shuffled order (so shards mix patients)."""
    vocab = {f: i for i, f in enumerate(src.findings)}
    by_image: dict[str, list] = {}
    for b in src.boxes.itertuples(index=False):
        by_image.setdefault(b.image_id, []).append((b.x, b.y, b.w, b.h, vocab[b.finding]))
    labels = present[list(src.findings)].to_numpy(np.float32)
    jobs = []
    for split in mf.SPLITS:
        rows = np.flatnonzero(present["split"].to_numpy() == split)
        if not len(rows):
            continue
        rows = rows[np.random.default_rng([seed, mf.SPLITS.index(split)]).permutation(len(rows))]
        items = [ImageJob(present["image_id"].iat[r], str(src.root / present["path"].iat[r]),
                          str(present["view"].iat[r]), labels[r],
                          by_image.get(present["image_id"].iat[r], [])) for r in rows]
        jobs += shard_jobs(split, items, out, images_per_shard, bbox_frame=src.bbox_frame, **options)
    return jobs


def _boxes_in_pixels(src, kept: pd.DataFrame) -> pd.DataFrame:
    """Ground-truth boxes of the written images, scaled from the box frame to each file's pixels."""
    sizes = kept.set_index("image_id")[["orig_width", "orig_height", "split"]]
    boxes = src.boxes[src.boxes["image_id"].isin(sizes.index)].join(sizes, on="image_id")
    if src.bbox_frame:
        sx, sy = boxes["orig_width"] / src.bbox_frame, boxes["orig_height"] / src.bbox_frame
        boxes = boxes.assign(x=boxes.x * sx, y=boxes.y * sy, w=boxes.w * sx, h=boxes.h * sy)
    return boxes[["image_id", "finding", "x", "y", "w", "h", "orig_width", "orig_height", "split"]]


def _summary(src, listed, kept, skipped, bad, boxes, jobs, out, config) -> dict:
    """The audit record of one prepare run."""
    card = cards.dataset_card(src.name)
    expected = card.get("expected", {})
    shards = {}
    for j in jobs:
        p = Path(j.path)
        if p.exists():
            shards[p.name] = {"images": int((kept["shard"] == p.name).sum()), "bytes": p.stat().st_size}
    return {
        "cxr_tf_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "data_dir": str(src.root),
        "files": src.files,
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
        },
        "release_check": {k: {"expected": v, "listed": _listed_count(k, listed, src)}
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


def _listed_count(key: str, listed: pd.DataFrame, src) -> int | None:
    """The count in the source files that an ``expected`` card entry describes."""
    return {
        "images": len(listed), "patients": listed["patient"].nunique(),
        "train_val_images": int((listed["split"] != "test").sum()),
        "test_images": int((listed["split"] == "test").sum()),
        "bbox_boxes": len(src.boxes), "bbox_images": src.boxes["image_id"].nunique(),
    }.get(key)


def load_summary(records_dir) -> dict:
    """Read a records directory's summary; a directory without one was never completed."""
    import json
    path = Path(records_dir) / SUMMARY
    if not path.is_file():
        raise CxrDataError(records_dir, f"no {SUMMARY}: not a completed records directory "
                                        "(run `cxr-tf prepare`, or rerun it if it was interrupted)")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
