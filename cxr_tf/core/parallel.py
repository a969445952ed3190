"""Process pools that are safe beside TensorFlow, and the number of training workers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys


def mp_context():
    """``fork`` is cheap, but unsafe once TensorFlow is loaded in this process: then ``spawn``."""
    if sys.platform.startswith("linux") and "tensorflow" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def imap(func, tasks: list, workers: int | None = None, chunksize: int = 1):
    """Yield ``func(task)`` for every task, in order: in this process with one worker (or one
    task), else in a process pool of ``workers`` (default: all cores) from :func:`mp_context`."""
    import os

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if workers == 1:
        yield from map(func, tasks)
        return
    with mp_context().Pool(workers) as pool:
        yield from pool.imap(func, tasks, chunksize=chunksize)


def workers_in_tf_config() -> int:
    """Number of training workers (chief included) named in ``TF_CONFIG``; 0 when unset."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    cluster = json.loads(raw).get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))
