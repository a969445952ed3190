"""Across datasets: the crosswalk maps the vocabularies, and ``evaluate --records OTHER`` scores a
NIH-trained model on CheXpert and MIMIC phantoms on the findings they share, from the model's own
outputs, into its own folder, saying what was mapped and how."""

import json

import numpy as np
import pandas as pd
import pytest

from cxr_tf.core import cards
from cxr_tf.vocab import crosswalk
from cxr_tf.core.errors import CxrConfigError

NIH = cards.dataset_card("chestxray14")["findings"]
CHEXPERT = cards.dataset_card("chexpert")["findings"]
MIMIC = cards.dataset_card("mimic")["findings"]


def test_every_concept_names_real_findings():
    vocab = {name: cards.dataset_card(name)["findings"] for name in cards.available("datasets")}
    for name, concept in crosswalk.concepts().items():
        assert concept["match"] in crosswalk.MATCHES, name
        for dataset, finding in concept.items():
            if dataset not in ("match", "note"):
                assert finding in vocab[dataset], (name, dataset, finding)


def test_nih_to_chexpert_pairs():
    pairs = {p.finding: p for p in crosswalk.pairs(NIH, CHEXPERT)}
    assert pairs["Pleural Effusion"].output == "Effusion" and pairs["Pleural Effusion"].match == "exact"
    assert pairs["Atelectasis"].match == "same name"
    assert {"No Finding", "Lung Lesion", "Lung Opacity", "Fracture", "Support Devices"}.isdisjoint(pairs)
    assert set(pairs) == {"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion",
                          "Pneumonia", "Pneumothorax"}
    wider = {p.finding: p for p in crosswalk.pairs(NIH, CHEXPERT, approximate=True)}
    assert wider["Lung Opacity"].output == "Infiltration" and wider["Lung Opacity"].match == "approximate"
    # and back: a CheXpert model on NIH labels
    back = {p.finding: p.output for p in crosswalk.pairs(CHEXPERT, NIH)}
    assert back["Effusion"] == "Pleural Effusion" and "Hernia" not in back


def test_chexpert_and_mimic_share_everything():
    assert [p.finding for p in crosswalk.pairs(CHEXPERT, MIMIC)] == MIMIC


def test_nothing_shared_is_an_error():
    with pytest.raises(CxrConfigError, match="share no finding"):
        crosswalk.require(["Hernia"], ["Fracture"])


def test_nih_model_scored_on_chexpert_and_mimic(tiny_run, chexpert_records, mimic_records):
    from cxr_tf.evaluation.evaluate import evaluate
    from cxr_tf.records.reader import RecordsDir

    own = evaluate(tiny_run, split="test", n_boot=20, figures=False)
    own_metrics = (tiny_run / "metrics.json").read_text()
    for records, split in ((chexpert_records, "val"), (mimic_records, "test")):
        m = evaluate(tiny_run, split=split, records=records, n_boot=20, figures=False)
        out = tiny_run / f"evaluate_{records.name}"
        assert m["out_dir"] == str(out) and (out / "metrics.json").is_file()
        assert (tiny_run / "metrics.json").read_text() == own_metrics          # the run's own results untouched
        mapped = {q["finding"]: q for q in m["crosswalk"]["mapped"]}
        effusion = mapped["Pleural Effusion"]
        assert effusion["model_output"] == "Effusion" and effusion["match"] == "exact"
        assert "No Finding" in m["crosswalk"]["records_findings_not_scored"]
        assert {"Mass", "Nodule", "Hernia"} <= set(m["crosswalk"]["model_outputs_not_used"])
        assert m["findings"] == [f for f in RecordsDir(records).findings if f in mapped]
        assert m["threshold_rule"].startswith("the model's own")
        np.testing.assert_allclose([m["thresholds"][f] for f in m["findings"]],
                                   [own["thresholds"][mapped[f]["model_output"]] for f in m["findings"]])
        preds = pd.read_csv(out / f"predictions_{split}.csv")
        assert len(preds) == m["images"] and "prob_Pleural Effusion" in preds and "patient" not in preds
        table = pd.read_csv(out / "metrics.csv")
        assert list(table["model_output"].iloc[:-1]) == [mapped[f]["model_output"] for f in m["findings"]]
    assert m["labels"] == {"label_source": ["chexpert"], "label_method": ["nlp"]}
    saved = json.loads((tiny_run / f"evaluate_{mimic_records.name}" / "metrics.json").read_text())
    assert saved["records_dataset"] == "mimic"
