"""Each loss against values computed by hand on small tensors."""

import math

import numpy as np
import pytest

from cxr_tf.models import losses

Y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
P = np.array([[0.8, 0.3, 0.1], [0.4, 0.6, 0.2]], np.float32)
ln = math.log


def test_bce():
    want = -(ln(0.8) + ln(0.7) + ln(0.9) + ln(0.6) + ln(0.6) + ln(0.8)) / 6
    assert float(losses.get("bce")(Y, P)) == pytest.approx(want, rel=1e-5)


def test_wcel_uses_batch_counts():
    # |P| = 2, |N| = 4: beta_P = 6/2 = 3, beta_N = 6/4 = 1.5, normalised by |P|+|N| = 6
    pos = -(ln(0.8) + ln(0.6))
    neg = -(ln(0.7) + ln(0.9) + ln(0.6) + ln(0.8))
    want = (3 * pos + 1.5 * neg) / 6
    assert float(losses.get("wcel")(Y, P)) == pytest.approx(want, rel=1e-5)


def test_wcel_batch_without_positives():
    y = np.zeros((2, 3), np.float32)
    want = -(ln(0.2) + ln(0.7) + ln(0.9) + ln(0.6) + ln(0.4) + ln(0.8)) / 6 * (6 / 6)
    assert float(losses.get("wcel")(y, P)) == pytest.approx(want, rel=1e-5)


def test_weighted_bce_dataset_level():
    # training set: class 0 has 10 positives of 100, class 1 has 50 of 100, class 2 has 1 of 100
    loss = losses.get("weighted_bce", positives=[10, 50, 1], totals=[100, 100, 100])
    wp, wn = np.array([0.9, 0.5, 0.99]), np.array([0.1, 0.5, 0.01])
    terms = -(wp * Y * np.log(P) + wn * (1 - Y) * np.log(1 - P))
    assert float(loss(Y, P)) == pytest.approx(terms.mean(), rel=1e-5)


def test_focal():
    a, g = 0.25, 2.0
    terms = -(a * (1 - P) ** g * Y * np.log(P) + (1 - a) * P ** g * (1 - Y) * np.log(1 - P))
    assert float(losses.get("focal")(Y, P)) == pytest.approx(terms.mean(), rel=1e-5)


def test_masked_bce_ignores_minus_one():
    y = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]], np.float32)
    want = -(ln(0.8) + ln(0.9) + ln(0.6) + ln(0.8)) / 4
    assert float(losses.get("masked_bce")(y, P)) == pytest.approx(want, rel=1e-5)
    # without ignored entries it equals plain BCE
    assert float(losses.get("masked_bce")(Y, P)) == pytest.approx(float(losses.get("bce")(Y, P)), rel=1e-6)


def test_unknown_and_missing_counts():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("dice")
    with pytest.raises(ValueError, match="positive counts"):
        losses.get("weighted_bce")
