"""Keras callbacks for cxr_tf training: validation AUROC and loss in one pass, atomic
checkpoints with resumable state, and step timing. (The TensorBoard Grad-CAM images are
:class:`cxr_tf.explain.CamImages`, which the command line adds.)"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np

from cxr_tf.core import atomic
from cxr_tf.evaluation.metrics import auroc_per_class
from cxr_tf.models import contract_model, save_model

log = logging.getLogger(__name__)


def probabilities(preds: np.ndarray) -> np.ndarray:
    """One probability per finding from a model's output: the output itself, or, for the three
    logits per finding of a U-MultiClass training model, sigmoid(l1 - l0) = p1 / (p0 + p1)."""
    preds = np.asarray(preds)
    return 1.0 / (1.0 + np.exp(preds[..., 0] - preds[..., 1])) if preds.ndim == 3 else preds


class ValidationMetrics(keras.callbacks.Callback):
    """After each epoch, predict the validation split once and put into the logs ``val_loss``
    (the training loss on the training encoding of the targets, averaged over batches as Keras
    would), ``val_auroc_<finding>`` and ``val_auroc_mean`` (on the certain labels), with
    ``tasks`` also ``val_auroc_tasks`` (their mean), and ``learning_rate``; TensorBoard, the
    plateau rule and checkpointing read them from there. Must come first in the callback list."""

    def __init__(self, images_ds, loss_targets: np.ndarray, metric_targets: np.ndarray, findings, loss_fn,
                 batch_size: int, tasks=None):
        super().__init__()
        self.images_ds = images_ds
        self.loss_targets, self.metric_targets = np.asarray(loss_targets, np.float32), np.asarray(metric_targets)
        self.findings, self.loss_fn, self.batch_size = list(findings), loss_fn, batch_size
        self.tasks = [self.findings.index(t) for t in tasks] if tasks else None

    def evaluate(self) -> dict:
        """Validation loss and AUROC of the current model."""
        preds = self.model.predict(self.images_ds, verbose=0)
        if len(preds) != len(self.loss_targets):
            raise RuntimeError(f"validation predictions ({len(preds)}) do not match labels "
                               f"({len(self.loss_targets)})")
        losses, sizes = [], []
        for i in range(0, len(preds), self.batch_size):
            y, p = self.loss_targets[i:i + self.batch_size], preds[i:i + self.batch_size]
            losses.append(float(self.loss_fn(y, p)))
            sizes.append(len(y))
        out = {"val_loss": float(np.average(losses, weights=sizes))}
        aucs = auroc_per_class(self.metric_targets, probabilities(preds))
        for f, a in zip(self.findings, aucs):
            out[f"val_auroc_{f}"] = float(a)
        out["val_auroc_mean"] = _nanmean(aucs)
        if self.tasks is not None:
            out["val_auroc_tasks"] = _nanmean(aucs[self.tasks])
        return out

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs.update(self.evaluate())
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        log.info("epoch %d: loss %.4f val_loss %.4f val_auroc_mean %.4f lr %.2g", epoch + 1,
                 logs.get("loss", float("nan")), logs["val_loss"], logs["val_auroc_mean"],
                 logs["learning_rate"])


class ResumablePlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose best/wait/cooldown survive a resume (Keras resets them at train
    begin)."""

    _restored = False

    def state(self) -> dict:
        """What a resume needs."""
        return {"best": _num(self.best), "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def restore(self, saved: dict | None) -> None:
        """Load a :meth:`state` dict saved by an earlier run."""
        if saved:
            self.best, self.wait = saved["best"], saved["wait"]
            self.cooldown_counter = saved["cooldown_counter"]
            self._restored = True

    def on_train_begin(self, logs=None):
        if not self._restored:
            super().on_train_begin(logs)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Each epoch (or checkpoint interval): save ``checkpoints/epoch-NNN.keras`` (the training
    model + optimizer state), then ``state.json`` naming it (epoch, history, best, the ``keep``
    best checkpoints by ``monitor``, plateau state), then drop checkpoints that are neither the
    latest nor among the best; on a new best also ``model.keras`` (the one-probability-per-finding
    model). Every file is written atomically and the state only ever names complete checkpoints,
    so a run killed at any point resumes cleanly."""

    def __init__(self, run_dir, plateau: ResumablePlateau | None = None, state: dict | None = None,
                 write: bool = True, monitor: str = "val_loss", keep: int = 1):
        super().__init__()
        self.run_dir, self.plateau, self.write = Path(run_dir), plateau, write
        self.monitor, self.keep, self.sign = monitor, max(1, int(keep)), (1.0 if monitor == "val_loss" else -1.0)
        self.state = state or {"epoch": 0, "history": [], "best_val_loss": None, "best_epoch": None}
        self.state.setdefault("monitor", monitor)
        self.state.setdefault("top", [])
        self._contract = None

    def on_train_begin(self, logs=None):
        self._contract = contract_model(self.model)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.state["history"].append({"epoch": epoch + 1, **{k: _num(v) for k, v in logs.items()}})
        val = logs.get("val_loss")
        if val is not None and (self.state["best_val_loss"] is None or val < self.state["best_val_loss"]):
            self.state["best_val_loss"] = float(val)
        score = logs.get(self.monitor)
        score = None if score is None or not np.isfinite(score) else float(score)
        best = min((self.sign * t["score"] for t in self.state["top"]), default=None)
        improved = score is not None and (best is None or self.sign * score < best)
        if improved:
            self.state["best_epoch"] = epoch + 1
        if not self.write:  # non-chief workers of a multi-worker run still save to a scratch dir
            return
        ckpt_dir = self.run_dir / "checkpoints"
        ckpt = ckpt_dir / f"epoch-{epoch + 1:03d}.keras"
        save_model(self.model, ckpt)
        if improved:
            save_model(self._contract or contract_model(self.model), self.run_dir / "model.keras")
            # operating points chosen for the previous best model do not belong to this one
            (self.run_dir / "thresholds.json").unlink(missing_ok=True)
        if score is not None:
            top = self.state["top"] + [{"epoch": epoch + 1, "score": score,
                                        "checkpoint": str(ckpt.relative_to(self.run_dir))}]
            self.state["top"] = sorted(top, key=lambda t: self.sign * t["score"])[:self.keep]
        self.state["epoch"] = epoch + 1
        self.state["checkpoint"] = str(ckpt.relative_to(self.run_dir))
        if self.plateau is not None:
            self.state["plateau"] = self.plateau.state()
        atomic.write_json(self.run_dir / "state.json", self.state)
        kept = {self.run_dir / t["checkpoint"] for t in self.state["top"]} | {ckpt}
        for old in ckpt_dir.glob("epoch-*.keras"):
            if old not in kept:
                old.unlink(missing_ok=True)
        import pandas as pd
        atomic.write_csv(self.run_dir / "history.csv", pd.DataFrame(self.state["history"]))


class StepTimer(keras.callbacks.Callback):
    """Wall time to the end of the first training step (tracing, graph optimization, first run)
    and the median of later steps; written to ``timing.json``."""

    def __init__(self, path, batch_size: int):
        super().__init__()
        self.path, self.batch_size = (None if path is None else Path(path)), batch_size
        self.first_step_s, self.steps = None, []

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._tb = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.first_step_s is None:
            self.first_step_s = now - self._t0
        else:
            self.steps.append(now - self._tb)

    def result(self) -> dict:
        """First step and steady-state step time so far."""
        med = float(np.median(self.steps)) if self.steps else None
        return {"first_step_s": self.first_step_s, "median_step_s": med, "steps_timed": len(self.steps),
                "steady_images_per_s": self.batch_size / med if med else None}

    def on_train_end(self, logs=None):
        if self.path is not None:
            atomic.write_json(self.path, self.result())


def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v
