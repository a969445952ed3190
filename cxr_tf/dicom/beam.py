"""``cxr-tf dicom --runner beam``: each file converted and de-identified by
:func:`cxr_tf.dicom.tool.convert_one` (the pool's function) inside an Apache Beam pipeline, for
releases too large for one machine (MIMIC-CXR: 377,110 DICOM files).

    file indices -> reshuffle -> convert one file (metadata row or error; image written
    atomically into OUT/images) -> batches -> part files of (index, row)

The driver lists the files and writes ``metadata.csv`` and ``errors.csv`` from the rows in file
order, exactly as the pool path does, so the same salt gives the same table. The pseudonym key is
not written to disk: it travels to the workers inside the pipeline definition, as it travels to
the pool's processes.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from cxr_tf.core import beam as cb
from cxr_tf.core.errors import CxrDataError


def convert_beam(jobs: list, out: Path, convert_one, *, options: dict | None = None,
                 workers: int | None = None) -> list[dict]:
    """``convert_one(job)`` (:func:`cxr_tf.dicom.tool.convert_one`: one metadata row, or
    ``{"error": reason}``) for every job, in job order, computed by a Beam pipeline (``options``;
    default the multi-process DirectRunner with ``workers`` processes)."""
    beam = cb.require()
    tmp = cb.temp_dir(Path(out))
    key = jobs[0].salt if jobs else b""
    jobs_file = cb.save_pickle([dataclasses.replace(j, salt=b"") for j in jobs], tmp / "jobs.pkl")

    def build(p):
        (p
         | "files" >> beam.Create(list(range(len(jobs))))
         | "convert" >> beam.Map(_convert_index, convert_one, jobs_file, key)
         | "batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=64)
         | "write" >> beam.Map(cb.write_part, str(tmp)))

    try:
        cb.run(build, tmp, options=options, workers=workers, total=len(jobs), desc="cxr-tf dicom", unit="file")
        rows = {int(i): row for i, row in cb.read_parts(tmp)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    missing = [j.path for i, j in enumerate(jobs) if i not in rows]
    if missing:
        raise CxrDataError(missing[0], f"the Beam pipeline returned no row for {len(missing)} file(s); run again")
    return [rows[i] for i in range(len(jobs))]


def _convert_index(index: int, convert_one, jobs_file: str, key: bytes):
    """Beam step: the file at ``index`` -> (index, its metadata row or error)."""
    job = dataclasses.replace(cb.load_pickle(jobs_file)[index], salt=key)
    return index, convert_one(job)
