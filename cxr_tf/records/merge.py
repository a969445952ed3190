"""``cxr-tf merge``: several records directories -> one, on one label set (no TensorFlow, no
image decoding).

The label sets are joined through the crosswalk (:func:`cxr_tf.vocab.crosswalk.union`): the same
name, or a concept that names both (approximate ones only when asked). A finding a dataset does
not label stays **blank** in its rows, so training on the merged records with ``blank = "ignore"``
and ``loss = "masked_bce"`` leaves it out of the loss, as torchxrayvision's merged datasets do.

Each record is copied as it is, with its label vector rewritten and its ``image_id`` prefixed by
its dataset (``chestxray14/00000013_008.png``); patients are prefixed the same way, so the splits
(each dataset's own, patient-disjoint) stay patient-disjoint. The manifest gains a ``dataset``
column, which ``evaluate`` reports by. Boxes and masks are carried over. The inputs must share the
stored image size and encoding. Writing is atomic as in ``prepare``: ``summary.json`` last.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cxr_tf import __version__
from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.core.progress import progress
from cxr_tf.records import tfrecord
from cxr_tf.records.integrity import finalize_summary
from cxr_tf.records.reader import BOXES, MANIFEST, MASKS, SCHEMA_VERSION, SKIPPED, SUMMARY, RecordsDir
from cxr_tf.records.writer import SHARD_GLOB, shard_name
from cxr_tf.sources import manifest as mf
from cxr_tf.vocab import crosswalk

log = logging.getLogger(__name__)
NAME = "merged"


def _check_inputs(recs: Sequence[RecordsDir]) -> None:
    """Refuse inputs that cannot share one records directory."""
    if len(recs) < 2:
        raise CxrConfigError("merge needs at least two records directories", key="records")
    names = [r.dataset for r in recs]
    if len(set(names)) < len(names):
        raise CxrConfigError(f"a dataset is given twice ({names}); merge different datasets", key="records")
    if NAME in names:
        raise CxrConfigError("merge the original records directories, not a merged one", key="records")
    for key in ("size", "encoding"):
        values = {r.summary["config"].get(key) for r in recs}
        if len(values) > 1:
            raise CxrConfigError(f"the records were prepared with different {key}s {sorted(map(str, values))}; "
                                 f"prepare them with one --{key}", key=key)


def _prefixed(frame: pd.DataFrame, dataset: str, columns=("image_id",)) -> pd.DataFrame:
    return frame.assign(**{c: dataset + "/" + frame[c].astype(str) for c in columns})


def merge(records_dirs: Sequence, out_dir, approximate: bool = False) -> dict:
    """Merge ``records_dirs`` (each from ``prepare``) into ``out_dir`` and return its summary."""
    recs = [RecordsDir(p) for p in records_dirs]
    _check_inputs(recs)
    findings, mapping, joins = crosswalk.union({r.dataset: r.findings for r in recs}, approximate)
    out = Path(out_dir)
    if any(out.resolve() == r.path.resolve() for r in recs):
        raise CxrConfigError("--out is one of the inputs", key="out")
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).unlink(missing_ok=True)           # untrusted until rewritten at the very end
    atomic.remove_partials(out)

    renamed: dict[tuple[str, str], str] = {}
    for split in mf.SPLITS:
        shards = [(r, Path(s)) for r in recs if split in r.summary["splits"] for s in r.shards(split)[0]]
        for i, (rec, shard) in enumerate(progress(shards, desc=f"merge {split}", unit="shard")):
            renamed[rec.dataset, shard.name] = shard_name(split, i, len(shards))
            _copy_shard(rec, shard, out / renamed[rec.dataset, shard.name], findings, mapping[rec.dataset])
    for stale in out.glob(SHARD_GLOB):
        if stale.name not in renamed.values():
            stale.unlink()

    manifest, boxes, masks, skipped = [], [], [], []
    for rec in recs:
        rows = rec.manifest.assign(shard=[renamed[rec.dataset, s] for s in rec.manifest["shard"]])
        rows = _prefixed(rows.rename(columns=mapping[rec.dataset]), rec.dataset, ("image_id", "patient", "study"))
        manifest.append(rows.assign(dataset=rec.dataset))
        boxes.append(_relabelled(rec.boxes(), rec.dataset, mapping))
        masks.append(_relabelled(rec.masks(), rec.dataset, mapping))
        skip = rec.path / SKIPPED
        if skip.is_file():
            skipped.append(_prefixed(pd.read_csv(skip, dtype=str), rec.dataset).assign(dataset=rec.dataset))
    frame = pd.concat(manifest, ignore_index=True)
    for f in findings:
        if f not in frame:
            frame[f] = np.nan
    frame = mf.order(frame, findings)
    mf.validate(frame, findings, where=out / MANIFEST)
    mf.write(frame, out / MANIFEST)
    atomic.write_csv(out / BOXES, pd.concat(boxes, ignore_index=True))
    masks = pd.concat(masks, ignore_index=True)
    if len(masks):
        atomic.write_csv(out / MASKS, masks)
    else:
        (out / MASKS).unlink(missing_ok=True)
    atomic.write_csv(out / SKIPPED, pd.concat(skipped, ignore_index=True) if skipped else
                     pd.DataFrame(columns=["image_id", "path", "split", "reason", "dataset"]))
    summary = finalize_summary(out, _summary(recs, frame, findings, mapping, joins, approximate, out))
    log.info("merged %d images of %s into %s (%d findings)", len(frame), [r.dataset for r in recs], out,
             len(findings))
    return summary


def _relabelled(table: pd.DataFrame, dataset: str, mapping: dict) -> pd.DataFrame:
    """Boxes or masks of one input, with prefixed image ids and union finding names."""
    return _prefixed(table, dataset).assign(finding=table["finding"].map(mapping[dataset]), dataset=dataset)


def _copy_shard(rec: RecordsDir, src: Path, dst: Path, findings: list[str], names: dict) -> int:
    """Copy one shard with each record's labels moved onto the union and its id prefixed."""
    index = {f: i for i, f in enumerate(findings)}
    where = [index[names[f]] for f in rec.findings]
    box_map = np.array(where, np.int64)

    def records():
        for data in tfrecord.read_records(src):
            features = tfrecord.example_features(data)
            parsed = _floats(features["labels"])
            labels = np.full(len(findings), np.nan, np.float32)
            labels[where] = parsed
            features["labels"] = labels
            features["image_id"] = rec.dataset + "/" + tfrecord.feature_bytes(features["image_id"])[0].decode()
            for key in ("box_labels", "mask_labels"):
                if key in features:
                    features[key] = box_map[_ints(features[key])]
            yield tfrecord.serialize_example(features)

    try:
        with atomic.atomic_path(dst) as tmp:
            return tfrecord.write_records(tmp, records())
    except ValueError as exc:
        raise CxrDataError(src, f"{exc}; prepare {rec.path} again or restore the shard") from None


def _values(raw: bytes, number: int) -> bytes:
    return b"".join(v for n, values in tfrecord._fields(raw) if n == number for _, v in tfrecord._fields(values))


def _floats(raw: bytes) -> np.ndarray:
    """The values of an encoded FloatList feature."""
    return np.frombuffer(_values(raw, 2), "<f4").astype(np.float32)


def _ints(raw: bytes) -> np.ndarray:
    """The values of an encoded Int64List feature (non-negative, as box labels are)."""
    packed, out, pos = _values(raw, 3), [], 0
    while pos < len(packed):
        value, pos = tfrecord._read_varint(packed, pos)
        out.append(value)
    return np.array(out, np.int64)


def _summary(recs, frame, findings, mapping, joins, approximate, out) -> dict:
    """The merged directory's summary.json (the same schema as prepare's)."""
    shards = {p.name: int((frame["shard"] == p.name).sum()) for p in sorted(out.glob(SHARD_GLOB))}
    sizes = {}
    for rec in recs:
        sizes.update({f"{rec.dataset}/{k}": v for k, v in rec.summary.get("image_sizes", {}).items()})
    first = recs[0].summary["config"]
    return {
        "schema_version": SCHEMA_VERSION,
        "cxr_tf_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"dataset": NAME, "size": first.get("size"), "encoding": first.get("encoding"),
                   "aspect": first.get("aspect"), "approximate": approximate,
                   "sources": [{"dataset": r.dataset, "records": str(r.path)} for r in recs]},
        "findings": findings,
        "crosswalk": {d: {k: v for k, v in m.items() if k != v} for d, m in mapping.items()},
        "joins": [j.__dict__ for j in joins],
        "labelled_by": {d: sorted(set(m.values())) for d, m in mapping.items()},
        "bbox_frame": None,
        "counts": {"listed_images": int(len(frame)), "listed_patients": int(frame["patient"].nunique()),
                   "written_images": int(len(frame)), "missing_images": 0, "unreadable_images": 0,
                   "skipped_images": 0, "boxes": int(sum(r.summary["counts"].get("boxes", 0) for r in recs)),
                   "per_dataset": {r.dataset: int((frame["dataset"] == r.dataset).sum()) for r in recs}},
        "splits": mf.split_summary(frame, findings),
        "labels": {f: int((frame[f] == 1).sum()) for f in findings},
        "views": {str(k): int(v) for k, v in frame["view"].value_counts().items()},
        "shards": shards,
        "image_sizes": sizes,
    }
