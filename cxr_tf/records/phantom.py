"""The ``--demo`` of every command, set up in one place: a dataset's phantom written in its real
layout, then prepared into records, each step kept (marked complete) so a second demo reuses it;
and :class:`Demo`, the one shape of every ``[demo]`` table (a reproduction recipe's, the search
space's, ``cxr_tf/federated/demo.toml``).

No TensorFlow here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError, CxrDataError

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
    from cxr_tf.records.prepare import prepare
    from cxr_tf.records.reader import load_summary

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


@dataclass
class Demo:
    """A command's ``--demo`` settings. Every ``[demo]`` table has this shape:

    - the phantom: ``images``, ``patients``, ``synth_size`` (px), ``seed``, and ``[demo.synth]``
      (the phantom writer's own options, e.g. ``dicom = true``);
    - ``[demo.prepare]``: how it is prepared (``size``, ``split``, ...);
    - ``[demo.train]``: TrainConfig fields over the command's own;
    - anything else the command reads (``bootstrap``, ``trials``, ``policy``, ...) in ``extra``."""

    images: int = 600
    patients: int | None = None
    synth_size: int = 128
    seed: int = 0
    synth: dict = field(default_factory=dict)
    prepare: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, table: Mapping | None, where: str = "[demo]") -> "Demo":
        """The settings of a ``[demo]`` table (missing keys: the defaults above)."""
        table = dict(table or {})
        for key in ("synth", "prepare", "train"):
            if not isinstance(table.get(key, {}), Mapping):
                raise CxrConfigError(f"{where}: {key} must be a table [demo.{key}]", key=key)
        known = {k: table.pop(k) for k in ("images", "patients", "synth_size", "seed", "synth", "prepare", "train")
                 if k in table}
        return cls(**{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in known.items()}, extra=table)

    def data_dir(self, out, dataset: str) -> Path:
        """The phantom of ``dataset`` in ``out/phantom`` (written once); returns its ``--data-dir``."""
        return phantom_dir(Path(out) / "phantom", dataset, images=self.images, patients=self.patients,
                           synth_size=self.synth_size, seed=self.seed, **self.synth)

    def records(self, out, dataset: str) -> Path:
        """The phantom of ``dataset`` prepared into ``out/records`` (both reused when complete)."""
        return phantom_records(out, dataset, images=self.images, patients=self.patients, synth_size=self.synth_size,
                               seed=self.seed, synth=self.synth, **self.prepare)
