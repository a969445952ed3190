"""``cxr-tf train``: the CheXNet recipe by default, any preset/backbone/loss by config.

:func:`train` plans a run (:func:`planned_config`: refusing what cannot start, before anything is
written) and trains it through one :class:`~cxr_tf.training.session.Session`, or through the two
phases of self-training (:mod:`cxr_tf.training.selftrain`) for U-SelfTrained findings.
"""

from __future__ import annotations

import json
from pathlib import Path

from cxr_tf.core.errors import CxrConfigError, CxrDataError
from cxr_tf.models.rundir import CONFIG, STATE, RunDir
from cxr_tf.training.config import TrainConfig, for_resume
from cxr_tf.training.selftrain import PHASE1, train_selftrained
from cxr_tf.training.session import Session
from cxr_tf.vocab.findings import policies


def planned_config(config: TrainConfig, resume: bool) -> tuple[TrainConfig, dict | None]:
    """The resolved config a run will use and its saved state (when resuming), refusing what
    cannot be started; writes nothing."""
    if config.out is None:
        raise CxrConfigError("a training run needs a run directory", key="out")
    run = Path(config.out)
    if resume:
        if not (run / CONFIG).is_file():
            raise CxrDataError(run, "nothing to resume: not a run directory (no config.json)")
        saved = RunDir(run)
        cfg = for_resume(saved.config, config.given_values())
        state = saved.state
        if state is None and not _phases_started(cfg):
            raise CxrDataError(run, "nothing to resume: no epoch completed; start it again without --resume")
        return cfg, state
    cfg = config.resolved()
    if (run / STATE).is_file() or _phases_started(cfg):
        epochs = json.loads((run / STATE).read_text()).get("epoch") if (run / STATE).is_file() else 0
        raise CxrDataError(run, f"already a run directory ({epochs} epoch(s) done); use --resume to "
                                "continue it, or a new --out")
    return cfg, None


def _phases_started(cfg: TrainConfig) -> bool:
    """Whether a self-training run has finished an epoch of its first phase."""
    return "selftrained" in policies(cfg.uncertain, cfg.findings) and (Path(cfg.out) / PHASE1 / STATE).is_file()


def train(config: TrainConfig, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train (or resume) a run; returns the run's final state. ``callbacks`` run after ours (for
    example :class:`cxr_tf.explain.CamImages`, which ``cxr-tf train`` adds). A config with
    U-SelfTrained findings trains in two phases (:mod:`cxr_tf.training.selftrain`)."""
    cfg, state = planned_config(config, resume)
    if "selftrained" in policies(cfg.uncertain, cfg.findings):
        return train_selftrained(cfg, state, callbacks)
    return Session(cfg).run(state, callbacks)
