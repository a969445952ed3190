"""Reading a run directory written by ``cxr-tf train`` (no TensorFlow until a model is loaded).

A run directory holds ``config.json`` (the resolved :class:`cxr_tf.training.config.TrainConfig`),
``split_summary.json`` (the records' counts at training time), ``environment.json``,
``state.json`` with ``checkpoints/`` (written after each completed epoch), ``model.keras`` (the
best epoch), ``history.csv``, ``timing.json``, TensorBoard ``logs/``, and what evaluate and
localize add (``metrics.json``, ``thresholds.json``, predictions, figures, localization tables).
Evaluate, predict, explain, localize and resume read it through :class:`RunDir`.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxr_tf.core.errors import CxrDataError
from cxr_tf.records.reader import RecordsDir

CONFIG = "config.json"
SPLIT_SUMMARY = "split_summary.json"
STATE = "state.json"
MODEL = "model.keras"
THRESHOLDS = "thresholds.json"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CxrDataError(path, f"unreadable JSON: {exc}") from None


class RunDir:
    """A run directory: its config, split summary, state, model and thresholds."""

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / CONFIG).is_file():
            raise CxrDataError(self.path, f"not a run directory (no {CONFIG}); train one with `cxr-tf train`")
        self.config = _read_json(self.path / CONFIG)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def model_path(self) -> Path:
        """The best model; a clear error if no epoch has completed yet."""
        path = self.path / MODEL
        if not path.is_file():
            raise CxrDataError(self.path, f"no {MODEL} yet: no epoch has completed (train first, or "
                                          "resume with `cxr-tf train --resume`)")
        return path

    @property
    def state(self) -> dict | None:
        """``state.json`` (epoch, history, best, checkpoint, plateau), or None before epoch 1."""
        path = self.path / STATE
        return _read_json(path) if path.is_file() else None

    @property
    def split_summary(self) -> dict:
        """The records' split counts as they were when training started."""
        path = self.path / SPLIT_SUMMARY
        if not path.is_file():
            raise CxrDataError(self.path, f"no {SPLIT_SUMMARY}; the run directory is incomplete")
        return _read_json(path)

    def records(self, override=None) -> RecordsDir:
        """The run's records directory (or ``override``)."""
        return RecordsDir(override or self.config["records"])

    def train_prevalence(self, findings) -> dict:
        """Training-split positive rate per finding."""
        train = self.split_summary["splits"]["train"]
        return {f: train["positives"].get(f, 0) / max(train["images"], 1) for f in findings}

    def load_model(self, compile: bool = False):
        """The run's best model (see :func:`cxr_tf.models.load_model`)."""
        from cxr_tf.models import load_model
        return load_model(self.model_path, compile=compile)


def find_run(model_path) -> RunDir | None:
    """The run directory holding a model file, or None for a model on its own."""
    folder = Path(model_path).resolve().parent
    return RunDir(folder) if (folder / CONFIG).is_file() else None
