"""Apache Beam plumbing shared by ``prepare --runner beam`` and ``dicom --runner beam``: pipeline
options (the DirectRunner in multi-process mode by default; Flink, Spark, Dataflow through
``--beam-option``), a temporary work folder inside the output, and results handed back to the
driver as small JSON part files (which also drive the progress bar).

apache-beam is imported only inside these functions, so ``cxr_tf`` imports without it; a missing
install is one error naming the extra (``pip install 'cxr-tf[beam]'``).

Runners other than the DirectRunner need every worker to see the input files and the output
folder at the same paths (a shared filesystem, e.g. NFS or a mounted bucket): the workers read the
images and write the shards and parts there themselves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import uuid
from functools import lru_cache
from pathlib import Path

from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError, CxrError
from cxr_tf.core.progress import progress

log = logging.getLogger(__name__)
RUNNERS = ("pool", "beam")
TMP_PREFIX = ".beam-tmp-"


def require():
    """The ``apache_beam`` module, or a :class:`CxrConfigError` saying how to install it."""
    logging.disable(logging.WARNING)     # importing it warns about optional Google Cloud clients
    try:
        import apache_beam
    except ImportError:
        raise CxrConfigError("needs apache-beam, which is not installed", key="runner",
                             fix="pip install 'cxr-tf[beam]', or use --runner pool") from None
    finally:
        logging.disable(logging.NOTSET)
    return apache_beam


def parse_options(pairs) -> dict:
    """``KEY=VALUE`` strings -> a dict of Beam options (values kept as strings)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise CxrConfigError(f"expected KEY=VALUE, got {pair!r}", key="beam-option")
        out[key.strip().lstrip("-").replace("-", "_")] = value.strip()
    return out


def pipeline_options(options: dict | None = None, workers: int | None = None):
    """Beam ``PipelineOptions`` from ``options`` (KEY -> value); with no ``runner`` given, the
    DirectRunner in ``multi_processing`` mode with ``workers`` processes (default: all cores).
    A value of ``True`` is a bare flag (``--KEY``)."""
    beam = require()
    opts = dict(options or {})
    if opts.get("runner", "DirectRunner") in ("DirectRunner", "direct"):
        opts.setdefault("runner", "DirectRunner")
        opts.setdefault("direct_running_mode", "multi_processing")
        opts.setdefault("direct_num_workers", str(workers or os.cpu_count() or 1))
    opts.setdefault("default_sdk_harness_log_level", "WARNING")   # the workers' INFO lines drown the output
    flags = [f"--{k}" if v is True else f"--{k}={v}" for k, v in opts.items()]
    return beam.options.pipeline_options.PipelineOptions(flags)


def temp_dir(out: Path) -> Path:
    """A fresh work folder inside ``out`` (so renames out of it stay on one filesystem); earlier
    ones, left by killed runs, are removed first."""
    remove_stale(out)
    tmp = Path(out) / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    return tmp


def remove_stale(out: Path) -> int:
    """Delete the work folders of earlier (killed) Beam runs in ``out``; return how many."""
    n = 0
    for p in Path(out).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def write_part(rows: list, tmp: str, tag: str | None = None) -> int:
    """Write ``rows`` (JSON-able) as one part file of ``tmp``, atomically; the file name carries
    the row count for the progress bar. Returns the count. Runs on the workers."""
    name = f"part-{len(rows)}-{tag or uuid.uuid4().hex}.json"
    atomic.write_text(Path(tmp) / name, json.dumps(rows))
    return len(rows)


def read_parts(tmp: Path) -> list:
    """Every row of every part file in ``tmp`` (in no particular order)."""
    rows = []
    for p in sorted(Path(tmp).glob("part-*.json")):
        rows += json.loads(p.read_text())
    return rows


@lru_cache(maxsize=4)
def load_pickle(path: str):
    """A pickled object (the jobs of a run), read once per worker process."""
    import pickle

    with open(path, "rb") as fh:
        return pickle.load(fh)


def save_pickle(obj, path: Path) -> str:
    """Pickle ``obj`` to ``path`` atomically; returns the path as a string (for the workers)."""
    import pickle

    with atomic.atomic_path(path) as p:
        Path(p).write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return str(path)


def run(build, tmp: Path, *, options: dict | None = None, workers: int | None = None, total: int = 0,
        desc: str = "beam", unit: str = "img") -> None:
    """Build a pipeline with ``build(pipeline)`` and run it to completion, with a progress bar fed
    by the part files appearing in ``tmp``."""
    beam = require()
    opts = pipeline_options(options, workers)
    log.info("running a Beam pipeline with options %s", opts.get_all_options(drop_default=True))
    direct = opts.get_all_options().get("runner") in ("DirectRunner", "direct", None)
    real = os.fdopen(os.dup(2), "w") if direct else sys.stderr     # the terminal, for the bar
    try:
        with progress(total=total, desc=desc, unit=unit, file=real) as bar, \
                _worker_log(tmp / "workers.log" if direct else None):
            _run_watched(beam, opts, build, tmp, bar)
    finally:
        if real is not sys.stderr:
            real.close()


def _run_watched(beam, opts, build, tmp: Path, bar) -> None:
    """Run the pipeline while a thread moves the part files' row counts onto ``bar``; a failure
    becomes one :class:`CxrError` with the end of the workers' log."""
    stop = threading.Event()

    def watch():
        seen = 0
        while not stop.wait(0.5):
            n = _done(tmp)
            if n > seen:
                bar.update(n - seen)
                seen = n

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        pipeline = beam.Pipeline(options=opts)
        build(pipeline)
        pipeline.run().wait_until_finish()
    except Exception as exc:
        tail = _tail(tmp / "workers.log")
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise CxrError(f"the Beam pipeline failed: {last}"
                       + (f"\nlast lines of the workers' log:\n{tail}" if tail else "")) from None
    finally:
        stop.set()
        thread.join()
    bar.update(max(0, _done(tmp) - bar.n))


@contextlib.contextmanager
def _worker_log(path: Path | None):
    """With ``path``, send this process's file descriptor 2 (inherited by the DirectRunner's worker
    processes, which log every start and stop) to ``path`` for the duration."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file that look like errors, else its last lines ("" if none)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [t for t in text if "Error" in t or "error" in t]
    return "\n".join((errors or text)[-lines:])


def _done(tmp: Path) -> int:
    """Rows written so far, from the part file names."""
    n = 0
    for p in Path(tmp).glob("part-*.json"):
        try:
            n += int(p.name.split("-")[1])
        except (IndexError, ValueError):
            pass
    return n
