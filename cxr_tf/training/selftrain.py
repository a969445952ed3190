"""U-SelfTrained (Irvin et al. 2019): train with U-Ignore on the ``selftrained`` findings, relabel
their uncertain training entries with that model's probabilities (soft targets), and retrain
from scratch on them.

A self-trained run directory holds the first phase as a complete run of its own in ``phase1/``,
the soft targets in ``soft_targets.csv`` (image_id, then one column per self-trained finding:
the phase-1 probability where the label is uncertain, blank elsewhere), and the second phase in
the run directory itself, whose ``model.keras`` is the result. Each phase resumes on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_tf.core import atomic
from cxr_tf.training.config import TrainConfig
from cxr_tf.training.session import Session
from cxr_tf.vocab.findings import UNCERTAIN, policies
from cxr_tf.records.reader import RecordsDir
from cxr_tf.models.rundir import CONFIG, STATE, RunDir

log = logging.getLogger(__name__)
PHASE1 = "phase1"
SOFT = "soft_targets.csv"


def phase1_config(cfg: TrainConfig) -> TrainConfig:
    """The first phase: the same run with every ``selftrained`` finding on U-Ignore, in ``phase1/``."""
    per = policies(cfg.uncertain, cfg.findings)
    mapping = {f: ("ignore" if p == "selftrained" else p) for f, p in zip(cfg.findings, per)}
    return TrainConfig(**{**cfg.to_dict(), "uncertain": mapping, "out": str(Path(cfg.out) / PHASE1)}).resolved()


def soft_targets(model, records: RecordsDir, cfg: TrainConfig) -> pd.DataFrame:
    """The phase-1 model's probabilities for the uncertain training entries of the
    ``selftrained`` findings (NaN elsewhere), indexed by image_id."""
    from cxr_tf.training.callbacks import probabilities
    from cxr_tf.pipeline import make_dataset

    names = [f for f, p in zip(cfg.findings, policies(cfg.uncertain, cfg.findings)) if p == "selftrained"]
    ds = make_dataset(records.path, "train", training=False, batch_size=cfg.batch_size, image_size=cfg.image_size,
                      findings=cfg.findings).map(lambda x, y: x)
    probs = probabilities(model.predict(ds, verbose=0))
    frame = records.split_frame("train")
    cols = [cfg.findings.index(f) for f in names]
    labels = frame[names].to_numpy(np.float32)
    soft = np.where(labels == UNCERTAIN, probs[:, cols], np.nan)
    return pd.DataFrame(soft, index=pd.Index(frame["image_id"], name="image_id"), columns=names)


def train_selftrained(cfg: TrainConfig, state: dict | None, callbacks=None) -> dict:
    """Both phases of a self-trained run (see the module doc); returns phase 2's final state."""
    from cxr_tf.models import load_model

    root = Path(cfg.out)
    soft_path = root / SOFT
    if state is None and not soft_path.is_file():
        first = phase1_config(cfg)
        if not (root / CONFIG).is_file():
            root.mkdir(parents=True, exist_ok=True)
            atomic.write_json(root / CONFIG, cfg.to_dict())
        p1_state = RunDir(first.out).state if (Path(first.out) / STATE).is_file() else None
        log.info("self-training %s: phase 1 (U-Ignore on the self-trained findings) in %s", root, first.out)
        Session(first).run(p1_state)
        records = RecordsDir(cfg.records)
        table = soft_targets(load_model(Path(first.out) / "model.keras"), records, cfg)
        atomic.write_csv(soft_path, table.reset_index())
        log.info("self-training %s: %d uncertain entries relabelled; phase 2", root, int(table.notna().sum().sum()))
    soft = pd.read_csv(soft_path, dtype={"image_id": str}).set_index("image_id")
    return Session(cfg).run(state, callbacks, soft_targets=soft, fresh_start_ok=False)
