"""Scoring a labeler against expert labels, counted by hand; the gold file's clear errors; the fixed
development split."""

import math

import pandas as pd
import pytest

from cxr_tf.core.errors import CxrDataError
from cxr_tf.label.score import NIH14, fold, read_gold, score


def test_counts_and_micro_f1_by_hand():
    gold = pd.DataFrame({"A": [1, 1, 0, 0, 1], "B": [0, 0, 0, 1, 0]})
    pred = pd.DataFrame({"a": [1, 0, 1, 0, -1], "B": [0, 0, 0, 1, 1]})   # -1 (uncertain) is not positive
    table, summary = score(pred, gold, ["A", "B"], names={"A": "a"})
    assert table.loc["A", ["tp", "fp", "fn", "tn"]].tolist() == [1, 1, 2, 1]
    assert table.loc["B", ["tp", "fp", "fn", "tn"]].tolist() == [1, 1, 0, 3]
    assert table.loc["A", "precision"] == 0.5 and table.loc["A", "recall"] == pytest.approx(1 / 3)
    assert (summary["tp"], summary["fp"], summary["fn"]) == (2, 2, 2)
    assert summary["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    empty, _ = score(pd.DataFrame({"C": [0, 0]}), pd.DataFrame({"C": [0, 0]}), ["C"])
    assert math.isnan(empty.loc["C", "f1"])
    with pytest.raises(CxrDataError, match="3 labelled rows against 2"):
        score(pd.DataFrame({"C": [0, 0, 0]}), pd.DataFrame({"C": [0, 0]}), ["C"])


def test_gold_file_errors_name_the_file(tmp_path):
    good = pd.DataFrame({"filename": ["CXR1", "CXR2"], **{f: [0, 1] for f in NIH14}})
    good.to_csv(tmp_path / "gold.csv", index=False)
    assert read_gold(tmp_path / "gold.csv")["Hernia"].tolist() == [0, 1]
    good.drop(columns="Edema").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(CxrDataError, match=r"short.csv: no column\(s\) \['Edema'\]"):
        read_gold(tmp_path / "short.csv")
    good.assign(Edema=[0, 2]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CxrDataError, match="bad.csv: 1 row.*line 3"):
        read_gold(tmp_path / "bad.csv")
    with pytest.raises(CxrDataError, match="no such gold"):
        read_gold(tmp_path / "missing.csv")


def test_fold_depends_on_the_name_only():
    names = [f"CXR{i}" for i in range(1, 2001)]
    folds = [fold(n) for n in names]
    assert folds == [fold(n) for n in names] and set(folds) == {0, 1, 2, 3, 4}
    assert 300 < folds.count(4) < 500                     # about a fifth
