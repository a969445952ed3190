"""Shards that can travel: each shard's size and CRC-32C in ``summary.json``, written in one place
(:func:`finalize_summary`, which every writer of a records directory calls last), checked cheaply
(sizes, :meth:`RecordsDir.check_shards`) before training starts, and fully (checksums,
:func:`verify`) by ``cxr-tf summary --verify`` and whenever TensorFlow reports a corrupt record.

Why CRC-32C rather than SHA-256: the risk is accidental damage in a copy (a truncated upload, a
flipped bit), not tampering, and CRC-32C catches every burst error up to 32 bits; it runs at
memory speed through ``google-crc32c`` (already used to frame the records); and it is the checksum
cloud object stores report (Google Cloud Storage's ``crc32c`` object hash), so a copy in a bucket
can be checked against ``summary.json`` without downloading it. It is stored as 8 hex digits.

Records directories written before schema 3 have sizes but no checksums: they are still read;
:func:`verify` then checks every record's own framing CRCs instead, after one warning.

No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrDataError
from cxr_tf.core.progress import progress
from cxr_tf.records.reader import SCHEMA_VERSION, SUMMARY, RecordsDir
from cxr_tf.records.tfrecord import read_records

log = logging.getLogger(__name__)
CHUNK = 1 << 20
FIX = "prepare the records again, or restore the shard from an intact copy"
_WARNED: set[str] = set()


def file_crc32c(path) -> str:
    """CRC-32C of a whole file, as 8 hex digits."""
    crc = google_crc32c.Checksum()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            crc.update(block)
    return crc.digest().hex()


def shard_entry(path, images: int) -> dict:
    """The ``summary.json`` entry of one shard on disk: its images, bytes and CRC-32C."""
    path = Path(path)
    return {"images": int(images), "bytes": path.stat().st_size, "crc32c": file_crc32c(path)}


def finalize_summary(out_dir, summary: dict) -> dict:
    """Complete and write a records directory's ``summary.json``: the last step of every writer
    (prepare, merge, subsets, other runners). ``summary["shards"]`` maps each shard file name to
    its image count (or an entry holding ``images``); its bytes and checksum are read here from the
    file on disk, and the schema version set to this cxr-tf's. Written atomically, so the
    directory is trusted only once this returns. Returns the summary."""
    out = Path(out_dir)
    shards = {}
    for name, info in sorted(summary.get("shards", {}).items()):
        images = info["images"] if isinstance(info, dict) else info
        path = out / name
        if not path.is_file():
            raise CxrDataError(path, "shard listed for summary.json was not written")
        shards[name] = shard_entry(path, images)
    summary = {**summary, "schema_version": SCHEMA_VERSION, "shards": shards}
    atomic.write_json(out / SUMMARY, summary)
    return summary


@dataclass(frozen=True)
class BadShard:
    """One shard that failed a check, and how."""

    name: str
    problem: str


def has_checksums(records: RecordsDir) -> bool:
    """Whether the summary records a checksum for every shard (schema 3 on)."""
    return all("crc32c" in s for s in records.summary["shards"].values())


def _warn_no_checksums(records: RecordsDir) -> None:
    key = str(records.path.resolve())
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("%s: written before shard checksums (schema %s < 3); checking each record's own CRCs "
                    "instead (prepare again to record checksums)", records.path,
                    records.summary.get("schema_version", 1))


def verify(records_dir, splits=None, show_progress: bool = True) -> list[BadShard]:
    """Every bad shard of ``splits`` (default: all): missing, of another size than recorded, or
    with a checksum other than recorded. Without recorded checksums (records older than schema 3,
    warned once), each record's framing CRCs are checked instead. Reads every byte."""
    records = records_dir if isinstance(records_dir, RecordsDir) else RecordsDir(records_dir)
    listed = records.summary["shards"]
    names = sorted(n for n in listed if splits is None or n.split("-")[0] in set(splits))
    checksums = has_checksums(records)
    if not checksums:
        _warn_no_checksums(records)
    total = sum(listed[n].get("bytes", 0) for n in names)
    bad = []
    with (progress(total=total, desc="verify shards", unit="B", unit_scale=True) if show_progress
          else contextlib.nullcontext()) as bar:
        for name in names:
            path, info = records.path / name, listed[name]
            problem = records.size_problem(name)
            if problem is None and checksums:
                crc = file_crc32c(path)
                if crc != info["crc32c"]:
                    problem = f"checksum {crc} differs from the recorded {info['crc32c']}: the file is corrupt"
            elif problem is None:
                try:
                    n = sum(1 for _ in read_records(path))
                    if n != info["images"]:
                        problem = f"{n} records, summary.json lists {info['images']}"
                except ValueError as exc:
                    problem = str(exc).removeprefix(f"{path}: ")
            if bar is not None:
                bar.update(info.get("bytes", 0))
            if problem:
                bad.append(BadShard(name, problem))
    return bad


def corrupt_shard_error(records_dir, splits, detail: str = "") -> CxrDataError:
    """The one error to raise when TensorFlow reported a corrupt or truncated record while reading
    ``splits``: the shards are verified to name the bad one(s); ``detail`` (TensorFlow's message,
    first line only) is kept when none is found."""
    records = records_dir if isinstance(records_dir, RecordsDir) else RecordsDir(records_dir)
    bad = verify(records, splits, show_progress=False)
    if len(bad) == 1:
        return CxrDataError(records.path / bad[0].name, f"corrupt shard ({bad[0].problem}); {FIX}")
    if bad:
        listed = "; ".join(f"{b.name}: {b.problem}" for b in bad)
        return CxrDataError(records.path, f"{len(bad)} corrupt shards ({listed}); {FIX}s")
    first = detail.strip().splitlines()[0] if detail.strip() else "a corrupt record"
    return CxrDataError(records.path, f"TensorFlow reports {first} in the {'/'.join(splits)} shards, yet every "
                                      f"shard matches summary.json; run `cxr-tf summary --verify {records.path}` "
                                      f"and {FIX}")
