"""Threshold rules: how a model's operating point is chosen per finding on the validation split
(a registry, chosen by name: ``cxr-tf evaluate --threshold-rule NAME[:VALUE]``, a recipe's
``[evaluate] threshold_rule``), kept apart from storing what was chosen (:func:`save_thresholds`).

================== =================================================================================
``max_f1``         the threshold with the highest F1 (the default; sklearn's precision-recall curve)
``youden``         the threshold with the highest Youden's J = sensitivity + specificity - 1 (ROC)
``sensitivity:V``  the highest threshold whose sensitivity is at least V (e.g. ``sensitivity:0.9``)
``specificity:V``  the lowest threshold whose specificity is at least V
``fixed:V``        V for every finding (e.g. ``fixed:0.5``)
``calibrated[:R]`` rule R's thresholds (default ``youden``), with the outputs mapped so that each
                   threshold becomes 0.5, as torchxrayvision's ``op_threshs`` / ``op_norm`` do
                   (:func:`calibrate`); the model keeps the raw operating points
================== =================================================================================

A finding whose labelled validation entries are all one class gets 0.5. Uncertain (-1) entries
are left out, as everywhere in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from cxr_tf.core.errors import CxrConfigError
from cxr_tf.vocab.findings import IGNORE

DEFAULT = "max_f1"


@dataclass(frozen=True)
class ThresholdRule:
    """A rule: its ``name``, its ``value`` (for the rules that take one) and, for ``calibrated``,
    the ``base`` rule whose thresholds it maps to 0.5."""

    name: str
    value: float | None = None
    base: "ThresholdRule | None" = None

    @property
    def calibrates(self) -> bool:
        """Whether the outputs are mapped so that the thresholds become 0.5."""
        return self.name == "calibrated"

    def spec(self) -> str:
        """The rule as it is written (``sensitivity:0.9``)."""
        if self.base is not None:
            return f"{self.name}:{self.base.spec()}"
        return self.name if self.value is None else f"{self.name}:{self.value:g}"

    def describe(self) -> str:
        """The rule in words, as stored in ``thresholds.json`` and the model."""
        return RULES[self.name][1](self)

    def choose(self, targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """One threshold per column of ``targets`` (1 / 0 / -1 ignored) and ``probs``."""
        if self.base is not None:
            return self.base.choose(targets, probs)
        out = np.full(targets.shape[1], 0.5)
        for j in range(targets.shape[1]):
            keep = targets[:, j] != IGNORE
            y, p = targets[keep, j].astype(int), probs[keep, j]
            if self.name == "fixed":
                out[j] = self.value
            elif 0 < y.sum() < len(y):
                out[j] = RULES[self.name][0](y, p, self.value)
        return out


def _max_f1(y, p, _value) -> float:
    prec, rec, thr = precision_recall_curve(y, p)
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    return float(thr[int(np.argmax(f1))])     # as evaluate always chose it (the lowest threshold of a tie)


def _roc(y, p):
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    return fpr[1:], tpr[1:], thr[1:]            # the first point (threshold +inf) calls nothing positive


def _youden(y, p, _value) -> float:
    fpr, tpr, thr = _roc(y, p)
    return float(thr[int(np.argmax(np.round(tpr - fpr, 12)))])    # a tie: the highest threshold


def _sensitivity(y, p, value) -> float:
    fpr, tpr, thr = _roc(y, p)
    return float(thr[int(np.flatnonzero(tpr >= value - 1e-12)[0])])    # thresholds fall: the first is highest


def _specificity(y, p, value) -> float:
    fpr, tpr, thr = _roc(y, p)
    return float(thr[int(np.flatnonzero(1 - fpr >= value - 1e-12)[-1])])  # the last one is lowest


# name -> (chooser(y, p, value), description(rule), takes a value)
RULES = {
    "max_f1": (_max_f1, lambda r: "max F1 per finding on the validation split", False),
    "youden": (_youden, lambda r: "max Youden's J (sensitivity + specificity - 1) per finding on the validation split",
               False),
    "sensitivity": (_sensitivity, lambda r: f"the highest threshold with sensitivity >= {r.value:g} per finding on "
                                            "the validation split", True),
    "specificity": (_specificity, lambda r: f"the lowest threshold with specificity >= {r.value:g} per finding on "
                                            "the validation split", True),
    "fixed": (None, lambda r: f"{r.value:g} for every finding", True),
    "calibrated": (None, lambda r: f"{r.base.describe()}, outputs calibrated so that each threshold maps to 0.5",
                   False),
}


def parse_rule(text: str | None) -> ThresholdRule:
    """``NAME`` or ``NAME:VALUE`` (``calibrated:BASE``) -> a :class:`ThresholdRule`; an unknown
    name or a value out of range is a :class:`CxrConfigError` listing the rules."""
    text = (text or DEFAULT).strip()
    name, _, value = text.partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in RULES:
        raise CxrConfigError(f"unknown threshold rule {name!r}", key="threshold_rule",
                             choices=[f"{n}:VALUE" if RULES[n][2] else n for n in RULES])
    if name == "calibrated":
        base = parse_rule(value or "youden")
        if base.calibrates:
            raise CxrConfigError("calibrated takes a base rule, not another calibrated one", key="threshold_rule")
        return ThresholdRule(name, base=base)
    takes = RULES[name][2]
    if takes != bool(value):
        raise CxrConfigError(f"{name} {'needs a value, e.g. ' + name + ':0.9' if takes else 'takes no value'}",
                             key="threshold_rule")
    if not takes:
        return ThresholdRule(name)
    try:
        number = float(value)
    except ValueError:
        raise CxrConfigError(f"{name}: {value!r} is not a number", key="threshold_rule") from None
    if not 0.0 <= number <= 1.0:
        raise CxrConfigError(f"{name}: {number:g} is not within [0, 1]", key="threshold_rule")
    return ThresholdRule(name, number)


def calibrate(probs: np.ndarray, thresholds) -> np.ndarray:
    """Outputs mapped piecewise-linearly so that each finding's threshold becomes 0.5 (0 and 1 stay
    put): p / (2t) below t, 1 - (1 - p) / (2 (1 - t)) above it (torchxrayvision's ``op_norm``).
    The order of the outputs, hence AUROC, is unchanged."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.clip(np.asarray(thresholds, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.where(p < t, p / (2 * t), 1 - (1 - p) / (2 * (1 - t)))


def save_thresholds(run_dir, model, thresholds: dict, rule: ThresholdRule, chosen_on: str = "val",
                    model_path=None) -> dict:
    """Store a run's operating points: ``thresholds.json`` in the run directory (the rule, where
    they were chosen, the thresholds) and the same thresholds inside ``model`` (its prediction
    layer, :func:`cxr_tf.models.thresholds_of`), saved atomically to ``model_path`` (default: the
    run's ``model.keras``). The only place either is written; returns what ``thresholds.json`` holds."""
    from pathlib import Path

    from cxr_tf.core import atomic
    from cxr_tf.models import save_model, set_thresholds
    from cxr_tf.models.rundir import MODEL, THRESHOLDS

    run_dir = Path(run_dir)
    record = {"chosen_on": chosen_on, "rule": rule.describe(), "rule_spec": rule.spec(),
              "calibrated": rule.calibrates, "thresholds": {k: float(v) for k, v in thresholds.items()}}
    atomic.write_json(run_dir / THRESHOLDS, record)
    set_thresholds(model, record["thresholds"], rule.describe())
    save_model(model, Path(model_path) if model_path else run_dir / MODEL)
    return record
