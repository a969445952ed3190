"""``cxr-tf tune``: hyperparameter search with keras-tuner over :class:`~cxr_tf.training.config.TrainConfig`
fields, by the mean validation AUROC :class:`cxr_tf.training.callbacks.ValidationMetrics` logs as
``val_auroc_mean`` (the number ``cxr-tf evaluate`` reports for the validation split).

The space is data (``tune_space.toml`` here, or ``--space FILE``), parsed and checked by
:func:`load_space` in pure Python; keras-tuner is imported only by the search. Trials train with
a :class:`~cxr_tf.training.session.Session`; a combination training refuses (plain ``bce`` with U-Ignore
labels) fails its trial with the reason (``keras_tuner.errors.FailedTrialError``) and the search
goes on. TUNE_DIR holds keras-tuner's project (``keras_tuner/``; a rerun resumes it), ``tune.json``
(what the search started with; a rerun must match) and, rewritten atomically after every trial
by whoever holds the oracle (the one process, or the chief in distributed mode), ``trials.csv``,
``best.toml`` (for ``cxr-tf train --config``) and ``summary.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Mapping

from cxr_tf.core import atomic
from cxr_tf.training.config import TrainConfig
from cxr_tf.core.errors import CxrConfigError, CxrDataError, CxrError
from cxr_tf.search.space import (OBJECTIVE, PROJECT, SEARCHES, SPACE, Space, _clean, augment_fields,  # noqa: F401
                               load_space, toml_table)  # (SPACE, augment_fields: re-exported)

log = logging.getLogger(__name__)


def trial_rows(oracle, space: Space, project: Path) -> list[dict]:
    """One row per trial: id, status, each hyperparameter (blank when inactive), the objective,
    the best epoch and, for a failed trial, the reason."""
    rows = []
    for tid in sorted(oracle.trials, key=int):
        t = oracle.trials[tid]
        hp, done = t.hyperparameters, t.status == "COMPLETED" and t.score is not None
        rows.append({"trial_id": tid, "status": t.status,
                     **{n: _clean(hp.values[n]) if n in hp.values and hp.is_active(n) else None for n in space.names},
                     OBJECTIVE: float(t.score) if done else None, "best_epoch": t.best_step + 1 if done else None,
                     "message": None if done else _reason(t.message, project / f"trial_{tid}")})
    return rows


def _reason(message: str | None, trial_dir: Path) -> str | None:
    """The last line of a trial's error (in distributed mode the worker wrote it to failure.txt)."""
    if not message and (trial_dir / "failure.txt").is_file():
        message = (trial_dir / "failure.txt").read_text(encoding="utf-8")
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return re.sub(r"^[\w.]*FailedTrialError: ", "", lines[-1]) if lines else None


def best_row(rows: list[dict]) -> dict | None:
    """The completed trial with the highest objective (the first such trial on a tie)."""
    done = [r for r in rows if r["status"] == "COMPLETED" and r[OBJECTIVE] is not None and math.isfinite(r[OBJECTIVE])]
    return max(done, key=lambda r: r[OBJECTIVE], default=None)


def write_reports(out, space: Space, oracle, search: str) -> dict:
    """Rewrite trials.csv, best.toml and summary.json in ``out`` (atomically); return the summary."""
    import pandas as pd

    out = Path(out)
    rows = trial_rows(oracle, space, out / PROJECT)
    atomic.write_csv(out / "trials.csv", pd.DataFrame(rows, columns=["trial_id", "status", *space.names,
                                                                      OBJECTIVE, "best_epoch", "message"]))
    best = best_row(rows)
    summary = {"search": search, "objective": OBJECTIVE, "max_trials": oracle.max_trials, "trials": len(rows),
               "completed": sum(r["status"] == "COMPLETED" for r in rows),
               "failed": sum(r["status"] in ("FAILED", "INVALID") for r in rows), "space": space.path,
               "records": space.fixed.get("records"), "best": None}
    if best is not None:
        values = {n: best[n] for n in space.names if best[n] is not None}
        space.trial_config(values)  # refuses what TrainConfig would not read back
        train = space.train_values(values)
        summary["best"] = {"trial_id": best["trial_id"], OBJECTIVE: best[OBJECTIVE], "best_epoch": best["best_epoch"],
                           "hyperparameters": values, "train": train}
        header = (f"cxr-tf tune: the best of {len(rows)} trial(s) ({search} search, space {space.path})\n"
                  f"trial {best['trial_id']}: {OBJECTIVE} = {best[OBJECTIVE]:.6f} (mean validation AUROC) at epoch "
                  f"{best['best_epoch']}\nretrain: cxr-tf train --config {out / 'best.toml'} --out RUN")
        atomic.write_text(out / "best.toml", toml_table("train", train, header))
    atomic.write_json(out / "summary.json", summary)
    return summary


def _trial_line(oracle, trial_id: str, space: Space, project: Path) -> str:
    rows = trial_rows(oracle, space, project)
    row, best = next(r for r in rows if r["trial_id"] == trial_id), best_row(rows)
    head = f"trial {trial_id} ({len(rows)} of {oracle.max_trials or '?'}) {row['status']}"
    if row["status"] != "COMPLETED":
        return f"{head}: {row['message']}"
    values = ", ".join(f"{n}={row[n]:.4g}" if isinstance(row[n], float) else f"{n}={row[n]}"
                       for n in space.names if row[n] is not None)
    return (f"{head}: {OBJECTIVE} {row[OBJECTIVE]:.4f} at epoch {row['best_epoch']}; best so far "
            f"{best[OBJECTIVE]:.4f} (trial {best['trial_id']}) | {values}")


# ---- the keras-tuner side (imported only when searching)

@functools.lru_cache(maxsize=None)
def _classes():
    """The HyperModel and the tuners, defined on first use so parsing needs no keras-tuner."""
    import keras_tuner as kt

    from cxr_tf.training.session import Session

    class HyperModel(kt.HyperModel):
        """Trial values -> a TrainConfig -> the compiled model (build) and the training (fit)."""

        def __init__(self, space: Space, records):
            super().__init__(name="cxr_tf")
            self.space, self.records, self.ready, self.builds = space, records, False, 0

        def session(self, hp) -> Session:
            """The training session of ``hp``'s values; a refused one fails the trial with the reason."""
            try:
                return Session(self.space.trial_config(self.space.declare(hp)), self.records)
            except CxrError as exc:
                raise kt.errors.FailedTrialError(str(exc)) from None

        def build(self, hp):
            """The compiled model of a trial (a placeholder while keras-tuner collects the space)."""
            if not self.ready:  # keras-tuner builds while collecting the space: declare, build nothing real
                import keras
                self.space.declare(hp)
                x = keras.Input((1,))
                return keras.Model(x, keras.layers.Dense(1)(x))
            session = self.session(hp)
            self.builds += 1
            return session.model()

        def fit(self, hp, model, *args, **kwargs):
            """Train a trial's model on its datasets; our callbacks, then keras-tuner's."""
            session = self.session(hp)
            cfg = session.cfg
            train_ds, val_ds, val_targets = session.datasets()
            ours, _ = session.callbacks(model, val_ds, val_targets)
            # ValidationMetrics first: it writes val_auroc_mean into the logs keras-tuner's callbacks read
            history = session.fit(model, train_ds, ours + list(kwargs.get("callbacks") or []),
                                  verbose=cfg.verbose if "verbose" in cfg.given else 0)
            # a finding without validation positives has no AUROC: not a metric for keras-tuner to track
            history.history = {k: v for k, v in history.history.items()
                               if k == OBJECTIVE or any(math.isfinite(x) for x in v)}
            return history

    class Reasons:
        """Keep a failed trial's reason in its folder (keras-tuner's gRPC drops the message)."""

        def on_trial_end(self, trial):
            """Write ``failure.txt`` for a failed trial, then end it as keras-tuner does."""
            if trial.status != "COMPLETED" and trial.message:
                atomic.write_text(Path(self.get_trial_dir(trial.trial_id)) / "failure.txt", trial.message)
            super().on_trial_end(trial)

    tuners = {"random": kt.RandomSearch, "grid": kt.GridSearch, "bayesian": kt.BayesianOptimization}
    return kt, HyperModel, {k: type(f"{v.__name__}Tuner", (Reasons, v), {}) for k, v in tuners.items()}


def make_tuner(space: Space, records, out, search: str = "random", trials: int | None = None,
               distribution_strategy=None):
    """A keras-tuner tuner of ``search`` over ``space`` in ``out`` (resuming what is there)."""
    kt, HyperModel, tuners = _classes()
    hypermodel = HyperModel(space, records)
    seed = int(space.fixed.get("seed", 0)) + 1  # keras-tuner draws a random seed for 0
    tuner = tuners[search](hypermodel=hypermodel, objective=kt.Objective(OBJECTIVE, "max"), max_trials=trials,
                           seed=seed, directory=str(out), project_name=PROJECT, overwrite=False,
                           distribution_strategy=distribution_strategy,
                           max_consecutive_failed_trials=max(3, trials or 10**6))  # refused trials go on
    hypermodel.ready = True
    return tuner


def _check_rerun(out: Path, started: dict, writer: bool) -> None:
    """A rerun in the same TUNE_DIR must search the same space (only --trials may change)."""
    path = out / "tune.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != started:
            diff = sorted(k for k in set(saved) | set(started) if saved.get(k) != started.get(k))
            raise CxrDataError(out, f"was searched with a different {', '.join(diff)} (see tune.json); a rerun "
                                    "resumes the same search (only --trials may change): use a new --out")
    elif writer:
        atomic.write_json(path, started)


def tune(out, records=None, *, search: str = "random", trials: int | None = None, space=None,
         overrides: Mapping | None = None, demo: bool = False, progress=None) -> dict:
    """Run (or resume) a search into ``out``; returns the summary (also ``summary.json``), with
    ``seconds`` and ``role``. ``progress(line)`` gets one line per finished trial."""
    from cxr_tf.training.distribute import strategy_for
    from cxr_tf.records.reader import RecordsDir

    t0 = time.perf_counter()
    out = Path(out)
    if search not in SEARCHES:
        raise CxrConfigError(f"unknown search {search!r}", key="search", choices=SEARCHES)
    if trials is not None and trials < 1:
        raise CxrConfigError(f"must be at least 1, got {trials}", key="trials")
    if records is None and not demo:
        raise CxrConfigError("is required (or use --demo)", key="records")
    records = Path(out / "demo" / "records" if demo else records).resolve()
    sp = load_space(space, {**dict(overrides or {}), "records": str(records)}, demo=demo)
    if demo:  # the phantom is written once the space is known to be good
        sp.demo.records(out / "demo", "chestxray14")
        trials = trials or int(sp.demo.extra["trials"])
    if search == "grid":
        sp.require_steps()
    trials = trials or (None if search == "grid" else 10)
    rec = RecordsDir(records)
    rec.require_splits("train", "val")
    rec.label_indices(TrainConfig.from_mapping(sp.fixed).resolved().findings)
    distributed = "KERASTUNER_ORACLE_IP" in os.environ  # keras-tuner's own test for its distributed mode
    worker = distributed and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")
    role = "worker" if worker else "chief" if distributed else "single"
    _check_rerun(out, {"search": search, "space": sp.to_dict()}, writer=not worker)
    import tensorflow as tf
    strategy = strategy_for(sp.fixed.get("strategy", "auto"))
    tuner = make_tuner(sp, rec, out, search, trials, None if strategy is tf.distribute.get_strategy() else strategy)
    if not worker:  # whoever holds the oracle reports after it ends each trial (here, or in the chief's server)
        end_trial = tuner.oracle.end_trial

        def reporting_end_trial(trial):
            try:
                end_trial(trial)
            finally:
                line = _trial_line(tuner.oracle, trial.trial_id, sp, out / PROJECT)
                log.info("%s", line)
                if progress:
                    progress(line)
                write_reports(out, sp, tuner.oracle, search)
        tuner.oracle.end_trial = reporting_end_trial
    def quiet(record):  # every trial is a new model: TensorFlow's retracing warning says nothing here
        return "triggered tf.function retracing" not in record.getMessage()
    logging.getLogger("tensorflow").addFilter(quiet)
    try:
        tuner.search(verbose=0)
    finally:
        logging.getLogger("tensorflow").removeFilter(quiet)
    summary = {"role": role}
    if not worker:
        summary.update(write_reports(out, sp, tuner.oracle, search))
    summary["seconds"] = time.perf_counter() - t0
    summary["builds"] = tuner.hypermodel.builds
    return summary
