"""Threshold rules against thresholds computed by hand, their parsing and refusals, the calibration
map, and ``cxr-tf evaluate --threshold-rule`` on a trained run (thresholds stored by the one
function that saves them)."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cxr_tf.core.errors import CxrConfigError
from cxr_tf.evaluation.thresholds import RULES, calibrate, parse_rule

# Ten validation images of one finding, sorted by probability (one uncertain entry, -1, ignored):
#   p: 0.05 0.10 0.20 0.30 0.40 0.55 0.60 0.70 0.80 0.90  and 0.50 uncertain
#   y:  0    0    1    0    0    1    0    1    1    1
P = np.array([0.05, 0.10, 0.20, 0.30, 0.40, 0.55, 0.60, 0.70, 0.80, 0.90, 0.50])
Y = np.array([0, 0, 1, 0, 0, 1, 0, 1, 1, 1, -1], dtype=float)
# By hand, calling p >= t positive (5 positives, 5 negatives):
#   t     TP FP  sens spec  F1      J
#   0.90   1  0  0.2  1.0  0.333   0.2
#   0.80   2  0  0.4  1.0  0.571   0.4
#   0.70   3  0  0.6  1.0  0.750   0.6
#   0.60   3  1  0.6  0.8  0.667   0.4
#   0.55   4  1  0.8  0.8  0.800   0.6
#   0.40   4  2  0.8  0.6  0.727   0.4
#   0.30   4  3  0.8  0.4  0.667   0.2
#   0.20   5  3  1.0  0.4  0.769   0.4
#   0.10   5  4  1.0  0.2  0.714   0.2
#   0.05   5  5  1.0  0.0  0.667   0.0
HAND = {"max_f1": 0.55, "youden": 0.70, "sensitivity:0.8": 0.55, "sensitivity:1": 0.20,
        "specificity:0.8": 0.55, "specificity:1": 0.70, "specificity:0.4": 0.20, "fixed:0.5": 0.5}


@pytest.mark.parametrize("spec,want", HAND.items())
def test_each_rule_against_a_hand_computed_threshold(spec, want):
    got = parse_rule(spec).choose(Y[:, None], P[:, None])
    assert got.shape == (1,) and got[0] == pytest.approx(want), spec


def test_one_class_findings_get_half_and_columns_are_independent():
    y = np.stack([Y, np.zeros_like(Y)], axis=1)
    p = np.stack([P, P], axis=1)
    for spec in ("max_f1", "youden", "sensitivity:0.9", "specificity:0.9", "calibrated"):
        got = parse_rule(spec).choose(y, p)
        assert got[1] == 0.5 and got[0] != 0.5, spec


def test_parsing_and_refusals():
    assert parse_rule(None).spec() == "max_f1" and parse_rule("Youden").spec() == "youden"
    assert parse_rule("calibrated").spec() == "calibrated:youden" and parse_rule("calibrated:max_f1").calibrates
    assert "sensitivity >= 0.9" in parse_rule("sensitivity:0.9").describe()
    for bad, match in (("nonesuch", "unknown threshold rule"), ("sensitivity", "needs a value"),
                       ("youden:0.3", "takes no value"), ("specificity:1.5", r"not within \[0, 1\]"),
                       ("fixed:high", "not a number"), ("calibrated:calibrated", "base rule")):
        with pytest.raises(CxrConfigError, match=match):
            parse_rule(bad)
    assert set(RULES) == {"max_f1", "youden", "sensitivity", "specificity", "fixed", "calibrated"}


def test_calibration_maps_each_threshold_to_one_half():
    p = np.array([0.0, 0.1, 0.2, 0.5, 0.6, 1.0])
    got = calibrate(p, 0.2)
    np.testing.assert_allclose(got, [0.0, 0.25, 0.5, 1 - 0.5 / 1.6, 1 - 0.4 / 1.6, 1.0])
    assert np.all(np.diff(got) > 0)                                  # order (and AUROC) unchanged
    both = calibrate(np.array([[0.3, 0.3]]), np.array([0.3, 0.6]))
    np.testing.assert_allclose(both, [[0.5, 0.25]])


def test_evaluate_with_a_rule_stores_its_thresholds(tiny_run, tmp_path):
    import shutil

    from cxr_tf.cli import main
    from cxr_tf.evaluation.evaluate import predict_split
    from cxr_tf.models import load_model, thresholds_of

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _, yv, pv, findings = predict_split(run, "val")
    for spec in ("youden", "sensitivity:0.8", "calibrated:max_f1"):
        res = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--bootstrap", "20", "--threshold-rule", spec])
        assert res.exit_code == 0, res.output
        want = parse_rule(spec).choose(yv, pv)
        saved = json.loads((run / "thresholds.json").read_text())
        assert saved["rule_spec"] == spec and saved["calibrated"] == spec.startswith("calibrated")
        np.testing.assert_allclose([saved["thresholds"][f] for f in findings], want)
        stored = thresholds_of(load_model(run / "model.keras"))
        np.testing.assert_allclose([stored[f] for f in findings], want)
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["threshold_rule_spec"] == spec and metrics["threshold_rule"] == parse_rule(spec).describe()
        preds = pd.read_csv(run / "predictions_test.csv")
        assert ("cal_" + findings[0] in preds) == spec.startswith("calibrated")
    cal = preds[[f"cal_{f}" for f in findings]].to_numpy()
    pred = preds[[f"pred_{f}" for f in findings]].to_numpy()
    np.testing.assert_array_equal(cal >= 0.5 - 1e-9, pred == 1)     # calibrated: the threshold is 0.5
    res = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--threshold-rule", "median"])
    assert res.exit_code == 2 and "unknown threshold rule" in res.output
