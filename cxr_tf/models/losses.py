"""Named multi-label losses, each with its source. All take ``(y_true, y_pred)`` with
``y_pred`` sigmoid probabilities, shape ``(batch, findings)``, and return a scalar per batch.

===============  =============================================================================
``bce``          plain binary cross-entropy, mean over findings and batch. CheXNet's 14-class
                 recipe ("the sum of unweighted binary cross entropy losses", §5); the mean
                 differs from the sum by the constant number of findings.
``wcel``         ChestX-ray8's weighted cross-entropy (Wang et al. 2017, eq. 1), with
                 β_P = (|P|+|N|)/|P| and β_N = (|P|+|N|)/|N| counted over the **batch**'s labels;
                 normalised by |P|+|N|, i.e. mean positive term + mean negative term.
``weighted_bce`` dataset-level positive weighting, CheXNet's pneumonia scheme:
                 w+ = |N|/(|P|+|N|), w− = |P|/(|P|+|N|) per finding, counted on the training set.
``focal``        focal loss (Lin et al. 2017), α-balanced, γ=2 by default.
``masked_bce``   BCE that ignores entries whose target is −1 (``findings.IGNORE``): CheXpert's
                 U-Ignore (and blank-as-ignore). Averaged over the entries that count.
===============  =============================================================================

``wcel``, ``weighted_bce`` and ``focal`` also skip −1 entries, so they work with U-Ignore labels.
"""

from __future__ import annotations

import keras
from keras import ops

from cxr_tf.models import presets
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.vocab.findings import IGNORE

_EPS = 1e-7
PACKAGE = "cxr_tf"


def _prep(y_true, y_pred):
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.clip(ops.cast(y_pred, "float32"), _EPS, 1.0 - _EPS)
    valid = ops.cast(ops.not_equal(y_true, IGNORE), "float32")
    return ops.where(valid > 0, y_true, 0.0), y_pred, valid


def _masked_mean(values, valid):
    return ops.sum(values * valid) / ops.maximum(ops.sum(valid), 1.0)


@keras.saving.register_keras_serializable(PACKAGE)
class BCE(keras.losses.Loss):
    """Plain binary cross-entropy (CheXNet 14-class). Targets must be 0/1."""

    def __init__(self, name="bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.clip(ops.cast(y_pred, "float32"), _EPS, 1.0 - _EPS)
        return ops.mean(-(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred)))


@keras.saving.register_keras_serializable(PACKAGE)
class MaskedBCE(keras.losses.Loss):
    """BCE over the entries whose target is not −1 (U-Ignore)."""

    def __init__(self, name="masked_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y, p, valid = _prep(y_true, y_pred)
        return _masked_mean(-(y * ops.log(p) + (1 - y) * ops.log(1 - p)), valid)


@keras.saving.register_keras_serializable(PACKAGE)
class WCEL(keras.losses.Loss):
    """ChestX-ray8 W-CEL with batch-level β_P = (|P|+|N|)/|P|, β_N = (|P|+|N|)/|N|."""

    def __init__(self, name="wcel", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y, p, valid = _prep(y_true, y_pred)
        pos, neg = y * valid, (1 - y) * valid
        n_pos, n_neg = ops.sum(pos), ops.sum(neg)
        total = n_pos + n_neg
        beta_p = total / ops.maximum(n_pos, 1.0)
        beta_n = total / ops.maximum(n_neg, 1.0)
        loss = beta_p * ops.sum(-ops.log(p) * pos) + beta_n * ops.sum(-ops.log(1 - p) * neg)
        return loss / ops.maximum(total, 1.0)


@keras.saving.register_keras_serializable(PACKAGE)
class WeightedBCE(keras.losses.Loss):
    """CheXNet's dataset-level weighting: w+ = |N|/(|P|+|N|), w− = |P|/(|P|+|N|) per finding.

    Build with :meth:`from_counts` from the training split's positive and total counts."""

    def __init__(self, pos_weight, neg_weight, name="weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_weight = [float(w) for w in pos_weight]
        self.neg_weight = [float(w) for w in neg_weight]

    @classmethod
    def from_counts(cls, positives, totals, **kwargs):
        """Weights from per-finding positive counts and labelled totals on the training set."""
        pos_w = [(t - p) / t if t else 0.5 for p, t in zip(positives, totals)]
        neg_w = [p / t if t else 0.5 for p, t in zip(positives, totals)]
        return cls(pos_w, neg_w, **kwargs)

    def call(self, y_true, y_pred):
        y, p, valid = _prep(y_true, y_pred)
        wp, wn = ops.convert_to_tensor(self.pos_weight), ops.convert_to_tensor(self.neg_weight)
        return _masked_mean(-(wp * y * ops.log(p) + wn * (1 - y) * ops.log(1 - p)), valid)

    def get_config(self):
        return {**super().get_config(), "pos_weight": self.pos_weight, "neg_weight": self.neg_weight}


@keras.saving.register_keras_serializable(PACKAGE)
class Focal(keras.losses.Loss):
    """α-balanced focal loss: −α(1−p)^γ y log p − (1−α) p^γ (1−y) log(1−p)."""

    def __init__(self, alpha=0.25, gamma=2.0, name="focal", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha, self.gamma = float(alpha), float(gamma)

    def call(self, y_true, y_pred):
        y, p, valid = _prep(y_true, y_pred)
        a, g = self.alpha, self.gamma
        loss = -(a * ops.power(1 - p, g) * y * ops.log(p) + (1 - a) * ops.power(p, g) * (1 - y) * ops.log(1 - p))
        return _masked_mean(loss, valid)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(PACKAGE)
class MulticlassLoss(keras.losses.Loss):
    """The loss of a model with U-MultiClass findings, on its three logits per finding [B, K, 3]:
    a 3-way softmax cross-entropy (targets 0 negative, 1 positive, 2 uncertain) for the
    ``multiclass`` findings and binary cross-entropy on sigmoid(l1 - l0) for the others (soft
    targets allowed); ignored (-1) entries are skipped, and the mean runs over those that count."""

    def __init__(self, multiclass, name="multiclass", **kwargs):
        super().__init__(name=name, **kwargs)
        self.multiclass = [bool(m) for m in multiclass]

    def call(self, y_true, y_pred):
        y = ops.cast(y_true, "float32")
        logits = ops.cast(y_pred, "float32")
        valid = ops.cast(ops.not_equal(y, IGNORE), "float32")
        mc = ops.convert_to_tensor(self.multiclass)
        p = ops.clip(ops.sigmoid(logits[..., 1] - logits[..., 0]), _EPS, 1.0 - _EPS)
        yb = ops.where(valid > 0, ops.clip(y, 0.0, 1.0), 0.0)
        bce = -(yb * ops.log(p) + (1 - yb) * ops.log(1 - p))
        cls = ops.cast(ops.where(valid > 0, y, 0.0), "int32")
        logp = ops.log_softmax(logits, axis=-1)
        ce = -ops.sum(logp * ops.one_hot(cls, 3), axis=-1)
        return _masked_mean(ops.where(mc, ce, bce), valid)

    def get_config(self):
        return {**super().get_config(), "multiclass": self.multiclass}


# The registry: each name of presets.toml's [losses] table (the CLI's choices) -> its class.
LOSSES = {"bce": BCE, "masked_bce": MaskedBCE, "wcel": WCEL, "weighted_bce": WeightedBCE, "focal": Focal}
if set(LOSSES) != set(presets.names("losses")):
    raise ImportError(f"cxr_tf.models.losses {sorted(LOSSES)} and presets.toml [losses] "
                      f"{sorted(presets.names('losses'))} disagree")


def get(name: str, *, positives=None, totals=None, **kwargs) -> keras.losses.Loss:
    """A loss by name; ``weighted_bce`` needs the training split's ``positives`` and ``totals``."""
    if name not in LOSSES:
        raise CxrConfigError(f"unknown loss {name!r}", key="loss", choices=LOSSES)
    if name == "weighted_bce":
        if positives is None or totals is None:
            raise ValueError("weighted_bce needs the training set's positive counts and totals")
        return WeightedBCE.from_counts(positives, totals, **kwargs)
    return LOSSES[name](**kwargs)
