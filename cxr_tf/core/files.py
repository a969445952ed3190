"""Reading input files with errors that name the file (never a bare ``FileNotFoundError``)."""

from __future__ import annotations

import os

from cxr_tf.core.errors import CxrImageError


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes; a missing or unreadable file raises :class:`CxrImageError` naming it."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise CxrImageError(path, "file not found") from None
    except OSError as exc:
        raise CxrImageError(path, f"cannot read: {exc.strerror or exc}") from None
