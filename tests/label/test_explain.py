"""``cxr-tf label --explain``: the audit trail names, for each report and each mention, the
sentence, the matched phrase, the trigger and the rule that decided; on reports we wrote."""

import json

import pandas as pd
from click.testing import CliRunner

from cxr_tf.cli import main
from cxr_tf.label import label_file, label_reports

REPORTS = [
    "FINDINGS: No focal consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax "
    "is identified. IMPRESSION: Borderline heart size.",
    "FINDINGS: Small pericardial effusion. IMPRESSION: Possible right lower lobe pneumonia.",
    "IMPRESSION: Stable left basilar atelectasis versus scarring. Mild pulmonary vascular congestion.",
    "",
]


def _mentions(record, finding):
    return [m for m in record["mentions"] if m["finding"] == finding]


def test_explain_through_the_command_line(tmp_path):
    pd.DataFrame({"accession": ["a1", "a2", "a3", "a4"], "text": REPORTS}).to_csv(tmp_path / "r.csv", index=False)
    res = CliRunner().invoke(main, ["label", str(tmp_path / "r.csv"), "--column", "text", "--out",
                                    str(tmp_path / "o.csv"), "--vocabulary", "chestxray14",
                                    "--explain", str(tmp_path / "why.jsonl")])
    assert res.exit_code == 0, res.output
    assert "audit trail" in res.output
    records = [json.loads(line) for line in (tmp_path / "why.jsonl").read_text().splitlines()]
    assert [r["accession"] for r in records] == ["a1", "a2", "a3", "a4"]     # the input's key columns
    assert "text" not in records[0]                                         # not the report itself
    one, two, three, four = records
    # a negation opening a long list reaches the last item, and says so
    (ptx,) = _mentions(one, "Pneumothorax")
    assert ptx == {"finding": "Pneumothorax", "state": "negative", "phrase": "pneumothorax", "list": "mentions",
                   "trigger": "no", "rule": "negation_pre.no", "sentence": ptx["sentence"]}
    assert ptx["sentence"].startswith("no focal consolidation")
    # a hedge built into a phrase the NIH convention counts
    (heart,) = _mentions(one, "Cardiomegaly")
    assert (heart["state"], heart["list"], heart["phrase"]) == ("positive", "affirmed", "borderline heart size")
    assert one["labels"]["Cardiomegaly"] == 1.0 and one["labels"]["Finding Labels"] == "Cardiomegaly"
    assert one["decided_by"]["Cardiomegaly"] == one["mentions"].index(heart)
    # a look-alike is recorded as excluded; an uncertain mention names its trigger
    (pericardial,) = _mentions(two, "Effusion")
    assert (pericardial["state"], pericardial["rule"], pericardial["phrase"]) == ("excluded", "exclude", "effusion")
    (pneumonia,) = _mentions(two, "Pneumonia")
    assert (pneumonia["state"], pneumonia["trigger"], pneumonia["rule"]) == ("uncertain", "possible",
                                                                             "uncertain_pre.possible")
    assert two["labels"]["Pneumonia"] == 0.0 and two["labels"]["Effusion"] == 0.0   # --uncertain negative
    # "X versus Y" is a hedge the NIH convention counts as positive: the trail says so
    (atelectasis,) = _mentions(three, "Atelectasis")
    assert (atelectasis["state"], atelectasis["trigger"]) == ("positive", "versus")
    assert atelectasis["rule"] == "uncertain_post.alternative" and "certain_classes" in atelectasis["convention"]
    assert _mentions(three, "Edema") == []                                  # congestion is not edema here
    assert four["mentions"] == [] and four["labels"]["No Finding"] == 1.0


def test_explain_is_the_same_with_workers_and_chunks(tmp_path):
    texts = REPORTS * 7
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "r.csv", index=False)
    label_file(tmp_path / "r.csv", tmp_path / "a.csv", column="text", vocab="chexpert", explain=tmp_path / "a.jsonl")
    label_file(tmp_path / "r.csv", tmp_path / "b.csv", column="text", vocab="chexpert", workers=2, chunk=5,
               explain=tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    rows = [json.loads(line)["row"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert rows == list(range(len(texts)))


def test_explain_in_python_matches_the_labels():
    trail = []
    frame = label_reports(REPORTS, "chexpert", explain=trail)
    assert len(trail) == len(REPORTS)
    # chexpert: vascular congestion is edema, "versus" keeps both uncertain, the impression only
    three = trail[2]
    assert three["labels"]["Edema"] == 1.0 and three["labels"]["Atelectasis"] == -1.0
    assert frame.loc[2, "Edema"] == 1.0 and frame.loc[2, "Atelectasis"] == -1.0
    assert all(m["sentence"].startswith(("stable", "mild")) for m in three["mentions"])
    one = trail[0]
    assert _mentions(one, "Pneumothorax") == []            # the findings section is not read by default here
    assert one["labels"]["Cardiomegaly"] == -1.0           # chexpert: borderline is uncertain
