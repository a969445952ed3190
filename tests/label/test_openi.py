"""The labeler on real reports: the 1,920 OpenI development reports with their expert labels
(``../shared``; skipped when absent), run exactly as a user runs it. The floors are the figures
reached when the rules were written, minus 0.01, so a later change cannot silently undo them.

The fixed split (:mod:`cxr_tf.label.score`): the rules were written while reading folds 0-3; fold 4
was only ever scored.
"""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.label import label_reports
from cxr_tf.label.io import read_reports
from cxr_tf.label.score import CHESTXRAY8, GOLD13, HELD_OUT_FOLD, SHARED_CHEXPERT, fold, read_gold, score

# micro-F1 reached, minus 0.01
FLOORS = {"all_13": 0.963 - 0.01, "all_8": 0.968 - 0.01, "held_out_13": 0.934 - 0.01, "held_out_8": 0.937 - 0.01,
          "chexpert_findings_impression": 0.888 - 0.01, "chexpert_impression": 0.770 - 0.01}


@pytest.fixture(scope="module")
def openi(shared_dir):
    folder = shared_dir / "reports" / "openi_dev"
    if not (folder / "gold.csv").is_file():
        pytest.skip("the OpenI development set is not in ../shared")
    gold = read_gold(folder / "gold.csv")
    _, texts, _ = read_reports(folder / "reports.csv")
    assert len(texts) == len(gold) == 1920
    return folder, gold, texts


@pytest.fixture(scope="module")
def labelled(openi, tmp_path_factory):
    """``cxr-tf label reports.csv --out labeled.csv --vocabulary chestxray14 --explain``, defaults otherwise."""
    folder, _, _ = openi
    out = tmp_path_factory.mktemp("openi")
    res = CliRunner().invoke(main, ["label", str(folder / "reports.csv"), "--out", str(out / "labeled.csv"),
                                    "--vocabulary", "chestxray14", "--explain", str(out / "why.jsonl")])
    assert res.exit_code == 0, res.output
    assert "sections findings,impression" in res.output                    # the vocabulary's default
    return pd.read_csv(out / "labeled.csv"), [json.loads(line) for line in open(out / "why.jsonl")]


def test_chestxray14_micro_f1_as_a_user_runs_it(openi, labelled):
    _, gold, _ = openi
    ours, _ = labelled
    held_out = np.array([fold(f) == HELD_OUT_FOLD for f in gold["filename"]])
    assert held_out.sum() == 354
    got = {}
    for part, mask in (("all", np.ones(len(gold), bool)), ("held_out", held_out)):
        for n, findings in (("13", GOLD13), ("8", CHESTXRAY8)):
            _, summary = score(ours[mask].reset_index(drop=True), gold[mask].reset_index(drop=True), findings)
            got[f"{part}_{n}"] = summary["micro_f1"]
    for key, value in got.items():
        assert value >= FLOORS[key], (key, value, got)


def test_chexpert_vocabulary_on_the_shared_findings(openi):
    _, gold, texts = openi
    for sections, key in (("findings,impression", "chexpert_findings_impression"),
                          ("impression", "chexpert_impression")):
        labels = label_reports(texts, "chexpert", sections=sections)
        _, summary = score(labels, gold, list(SHARED_CHEXPERT), SHARED_CHEXPERT)
        assert summary["micro_f1"] >= FLOORS[key], (sections, summary)


def test_every_label_is_explained_on_real_reports(labelled):
    ours, records = labelled
    assert [r["row"] for r in records] == list(range(len(ours)))
    findings = [c for c in ours.columns if c not in ("Reports", "labeler", "Finding Labels", "No Finding")]
    for record, (_, row) in zip(records, ours.iterrows()):
        assert record["labels"]["Finding Labels"] == row["Finding Labels"]
        for finding in findings:
            if row[finding] == 1:                         # a positive label names the mention that made it
                j = record["decided_by"][finding]
                mention = record["mentions"][j]
                assert mention["finding"] == finding and mention["state"] == "positive"
                assert mention["phrase"] in mention["sentence"]
            states = {m["state"] for m in record["mentions"] if m["finding"] == finding}
            assert (row[finding] == 1) == ("positive" in states)
