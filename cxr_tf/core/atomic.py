"""Atomic writes: a file becomes visible under its final name only once it is complete.

A killed process leaves at most a ``*.partial-<pid>`` file behind, which no reader trusts and the
next run removes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

PARTIAL = ".partial-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False):
    """Yield a temporary path beside ``path``; on success, fsync and rename it onto ``path``.

    ``keep_suffix`` puts the marker before the extension (``model.partial-123.keras``) for
    writers that insist on an extension, such as ``keras.Model.save``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_suffix:
        tmp = path.with_name(f"{path.stem}{PARTIAL}{os.getpid()}{path.suffix}")
    else:
        tmp = path.with_name(f"{path.name}{PARTIAL}{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_csv(path: str | os.PathLike, frame, **kwargs) -> None:
    """Atomically write a pandas DataFrame as CSV (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def remove_partials(folder: str | os.PathLike) -> int:
    """Delete leftovers of killed writers in ``folder``; return how many were removed."""
    n = 0
    for p in Path(folder).glob(f"*{PARTIAL}*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def _jsonable(obj):
    """JSON fallback for NumPy scalars and paths."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
