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


class CxrConfigError(CxrError, ValueError):
    """A bad user choice: an unknown preset, backbone, loss or config key, a value out of range.

    ``key`` names the setting (a :class:`cxr_tf.training.config.TrainConfig` field or a command option)
    and ``fix`` a value that would work; the message speaks Python (``weights=none``) and
    :meth:`cli_message` speaks the command line (``--weights none``)."""

    def __init__(self, problem: str, *, key: str | None = None, fix: str | None = None, choices=None):
        self.problem, self.key, self.fix = problem, key, fix
        self.choices = None if choices is None else tuple(str(c) for c in choices)
        super().__init__(self._render(lambda k: k, lambda k, v: f"{k}={v}"))

    def _render(self, name, assign) -> str:
        text = f"{name(self.key)}: {self.problem}" if self.key else self.problem
        if self.fix is not None:
            text += f"; use {assign(name(self.key), self.fix) if self.key else self.fix}"
        if self.choices:
            text += "; choose " + (", ".join(self.choices[:-1]) + " or " if len(self.choices) > 1 else "") \
                + self.choices[-1]
        return text

    def cli_message(self) -> str:
        """The message with settings spelled as command-line options."""
        return self._render(lambda k: "--" + k.replace("_", "-"), lambda k, v: f"{k} {v}")

    def __reduce__(self):
        return (_rebuild_config_error, (type(self), self.problem, self.key, self.fix, self.choices))


def _rebuild_config_error(cls, problem, key, fix, choices):
    """Unpickle a :class:`CxrConfigError` (errors cross process boundaries)."""
    err = CxrConfigError.__new__(cls)
    CxrConfigError.__init__(err, problem, key=key, fix=fix, choices=choices)
    return err


class LeakageError(CxrError, AssertionError):
    """Patients shared between splits: a split would leak patients from train into evaluation."""
