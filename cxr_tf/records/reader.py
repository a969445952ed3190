"""Reading a records directory written by ``cxr-tf prepare`` (no TensorFlow, no PIL).

The directory holds ``{split}-NNNNN-of-NNNNN.tfrecord`` shards, ``manifest.csv`` (one row per
written image, with its shard and position), ``boxes.csv``, ``masks.csv`` (schema 2, datasets with
segmentation masks), ``skipped.csv`` and ``summary.json``. It is trusted only once ``summary.json``
exists (prepare writes it last). The pipeline, training, evaluation and localization read it
through :class:`RecordsDir`; prepare, the writer, uses the same file names.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd

from cxr_tf.core.errors import CxrDataError

# Shards per split per training worker that prepare writes and train needs to shard by file
# (MultiWorkerMirroredStrategy); here, not in the writer, so the pipeline reads it without PIL.
MIN_SHARDS_PER_WORKER = 8

SUMMARY = "summary.json"
MANIFEST = "manifest.csv"
BOXES = "boxes.csv"
MASKS = "masks.csv"
SKIPPED = "skipped.csv"
# Of summary.json and the record features (see cxr_tf.records.writer). 2 added the optional masks
# (``masks.csv``, features ``mask_rle``/``mask_labels``); a version-1 directory reads as one without masks.
# 3 added each shard's ``crc32c`` in summary.json (:mod:`cxr_tf.records.integrity`); older directories
# are read without it (their shards are checked by size, and by their records' own CRCs on --verify).
SCHEMA_VERSION = 3
_ID_COLUMNS = {"image_id": str, "patient": str, "study": str, "path": str, "view": str, "sex": str}


def load_summary(records_dir) -> dict:
    """Read a records directory's summary; a directory without one was never completed."""
    path = Path(records_dir) / SUMMARY
    if not path.is_file():
        raise CxrDataError(records_dir, f"no {SUMMARY}: not a completed records directory "
                                        "(run `cxr-tf prepare`, or rerun it if it was interrupted)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CxrDataError(path, f"unreadable summary: {exc}") from None
    if summary.get("schema_version", 1) > SCHEMA_VERSION:
        raise CxrDataError(path, f"records schema version {summary['schema_version']} is newer than this "
                                 f"cxr-tf reads ({SCHEMA_VERSION}); upgrade cxr-tf")
    return summary


class RecordsDir:
    """A completed records directory: its summary, shards per split, manifest and boxes."""

    def __init__(self, path):
        self.path = Path(path)
        self.summary = load_summary(self.path)

    def __repr__(self) -> str:
        return f"RecordsDir({str(self.path)!r})"

    @property
    def dataset(self) -> str:
        """The dataset the records were prepared from."""
        return self.summary["config"]["dataset"]

    @property
    def findings(self) -> list[str]:
        """The label vector's finding names, in stored order."""
        return list(self.summary["findings"])

    @property
    def stored_size(self) -> int:
        """The side of the stored (square) images."""
        return int(self.summary["config"]["size"])

    @property
    def aspect(self) -> str:
        """How prepare made non-square images square (``pad``, ``crop``, ``stretch``)."""
        return self.summary["config"].get("aspect", "pad")

    @property
    def encoding(self) -> str:
        """``png`` or ``jpeg``."""
        return self.summary["config"].get("encoding", "png")

    @property
    def splits(self) -> dict:
        """Counts per split (images, patients, positives, uncertain, views)."""
        return self.summary["splits"]

    def require_splits(self, *names: str) -> None:
        """Refuse records without one of the named splits."""
        for name in names:
            if name not in self.splits:
                raise CxrDataError(self.path, f"the records have no {name!r} split; splits present: "
                                              f"{sorted(self.splits)}")

    def shards(self, split: str) -> tuple[list[str], int]:
        """The shard paths of one split and its image count; a clear error if the split is
        empty or a shard is missing or changed since prepare wrote it (:meth:`check_shards`)."""
        shards = self._split_shards(split)
        self.check_shards(split)
        return [str(self.path / name) for name in sorted(shards)], sum(s["images"] for s in shards.values())

    def _split_shards(self, split: str) -> dict:
        shards = {n: s for n, s in self.summary["shards"].items() if n.startswith(f"{split}-")}
        if not shards:
            raise CxrDataError(self.path, f"no {split!r} shards; splits present: {sorted(self.splits)}")
        return shards

    def size_problem(self, name: str) -> str | None:
        """Why one listed shard cannot be trusted by its size (missing, or another size than
        summary.json records), or None."""
        path, info = self.path / name, self.summary["shards"][name]
        if not path.is_file():
            return "missing"
        size = path.stat().st_size
        if size != info["bytes"]:
            how = "truncated" if size < info["bytes"] else "changed"
            return f"{size:,} bytes, summary.json records {info['bytes']:,} ({how})"
        return None

    def check_shards(self, *splits: str) -> None:
        """Refuse, in one error naming each, the shards of ``splits`` that are missing or have
        another size than summary.json records (a truncated or replaced copy): a check of sizes
        only, run before training starts; ``cxr-tf summary --verify`` checks the checksums."""
        bad = [(name, p) for split in splits for name in sorted(self._split_shards(split))
               if (p := self.size_problem(name))]
        if not bad:
            return
        fix = "prepare the records again, or restore the shard(s) from an intact copy"
        if len(bad) == 1:
            raise CxrDataError(self.path / bad[0][0], f"shard listed in summary.json is missing or has changed "
                                                      f"({bad[0][1]}); {fix}")
        raise CxrDataError(self.path, f"{len(bad)} shards listed in summary.json are missing or have changed ("
                                      + "; ".join(f"{n}: {p}" for n, p in bad) + f"); {fix}")

    def label_indices(self, findings=None) -> list[int] | None:
        """Positions of ``findings`` in the stored label vector (None: all, in stored order)."""
        if findings is None or list(findings) == self.findings:
            return None
        missing = [f for f in findings if f not in self.findings]
        if missing:
            raise CxrDataError(self.path, f"finding(s) {missing} not in the records' labels {self.findings}")
        return [self.findings.index(f) for f in findings]

    @functools.cached_property
    def manifest(self) -> pd.DataFrame:
        """``manifest.csv``: one row per written image."""
        path = self.path / MANIFEST
        if not path.is_file():
            raise CxrDataError(path, "manifest not found; rerun `cxr-tf prepare`")
        return pd.read_csv(path, dtype=_ID_COLUMNS)

    def split_frame(self, split: str) -> pd.DataFrame:
        """The manifest rows of one split, in the order an evaluation dataset yields them."""
        part = self.manifest[self.manifest["split"] == split]
        return part.sort_values(["shard", "shard_index"], kind="stable").reset_index(drop=True)

    def boxes(self, split: str | None = None) -> pd.DataFrame:
        """Ground-truth boxes in original pixels (``boxes.csv``), optionally of one split."""
        path = self.path / BOXES
        boxes = pd.read_csv(path, dtype={"image_id": str}) if path.is_file() else pd.DataFrame(
            columns=["image_id", "finding", "x", "y", "w", "h", "orig_width", "orig_height", "split"])
        return boxes if split is None else boxes[boxes["split"] == split].reset_index(drop=True)

    def masks(self, split: str | None = None) -> pd.DataFrame:
        """Ground-truth segmentation masks (``masks.csv``: canonical run-length text over each
        original file's pixels, see :mod:`cxr_tf.imaging.masks`), optionally of one split; empty
        for a dataset without masks."""
        path = self.path / MASKS
        masks = pd.read_csv(path, dtype={"image_id": str, "rle": str}, keep_default_na=False) \
            if path.is_file() else pd.DataFrame(columns=["image_id", "finding", "rle", "width", "height", "split"])
        return masks if split is None else masks[masks["split"] == split].reset_index(drop=True)

    def image_size(self, image_id: str) -> tuple[int, int]:
        """(width, height) of an image's original file."""
        return tuple(self.summary["image_sizes"][image_id])
