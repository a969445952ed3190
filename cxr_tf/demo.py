"""Phantom data for the ``--demo`` of a command: a dataset's phantom written in its real layout,
then prepared into records, each step kept (marked complete) so a second demo reuses it.

No TensorFlow here."""

from __future__ import annotations

import logging
from pathlib import Path

from cxr_tf import atomic
from cxr_tf.errors import CxrDataError

log = logging.getLogger(__name__)

COMPLETE = ".complete"


def phantom_dir(out, dataset: str = "chestxray14", *, images: int = 600, patients: int | None = None,
                synth_size: int = 128, seed: int = 0, **synth) -> Path:
    """Write (or reuse) a phantom of ``dataset`` under ``out`` and return its ``--data-dir``."""
    from cxr_tf.sources import synth_writer

    out = Path(out)
    marker = out / COMPLETE
    if not marker.is_file():
        info = synth_writer(dataset)(out, n_images=images, n_patients=patients, size=synth_size, seed=seed,
                                     **synth)
        atomic.write_text(marker, info.get("data_dir", str(out)) + "\n")
    else:
        log.info("reusing the phantom in %s", out)
    marked = Path(marker.read_text().strip())
    return marked if marked.is_dir() else out


def phantom_records(out, dataset: str = "chestxray14", *, images: int = 600, patients: int | None = None,
                    synth_size: int = 128, size: int = 64, seed: int = 0, split: str = "random",
                    images_per_shard: int = 128, synth: dict | None = None, **prepare_options) -> Path:
    """A phantom of ``dataset`` in ``out/phantom`` prepared at ``size`` px into ``out/records``
    (both reused when already complete with the same settings); returns the records directory."""
    from cxr_tf.prepare import prepare
    from cxr_tf.recordsdir import load_summary

    out = Path(out)
    data_dir = phantom_dir(out / "phantom", dataset, images=images, patients=patients, synth_size=synth_size,
                           seed=seed, **(synth or {}))
    records = out / "records"
    try:
        c = load_summary(records)["config"]
        if (c["dataset"], c["split"], c["size"], c["seed"]) == (dataset, split, size, seed):
            log.info("reusing %s", records)
            return records
    except (CxrDataError, KeyError):
        pass
    prepare(dataset, data_dir, records, split=split, size=size, seed=seed, images_per_shard=images_per_shard,
            **prepare_options)
    return records
