"""Errors that name the file and the problem, so a user never has to read a TensorFlow traceback."""

from __future__ import annotations

import os


class CxrError(Exception):
    """Base class of every error cxr_tf raises on purpose."""


class CxrDataError(CxrError, ValueError):
    """Bad input data: a missing or malformed file, column or label. The message names the file."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):
        # pickle by the constructor's own arguments (errors cross process boundaries in prepare)
        return (CxrDataError._rebuild, (type(self), self.path, self.problem))

    @staticmethod
    def _rebuild(cls, path, problem):
        """Recreate an error of class ``cls`` without calling a subclass's own ``__init__``."""
        err = cls.__new__(cls)
        CxrDataError.__init__(err, path, problem)
        return err


class CxrImageError(CxrDataError):
    """An image file that cannot be decoded (empty, truncated, not an image)."""


class MissingImagesError(CxrDataError):
    """Images listed in the label file but absent on disk."""

    def __init__(self, path, missing: list[str], examples: int = 5):
        self.missing = list(missing)
        shown = ", ".join(self.missing[:examples])
        super().__init__(
            path,
            f"{len(self.missing)} listed image(s) not found on disk (e.g. {shown}). "
            "Unpack the missing archives, or pass --allow-missing to skip them (they are counted "
            "and reported).")


class LeakageError(CxrError, AssertionError):
    """Patients shared between splits: a split would leak patients from train into evaluation."""
