"""The labeler on its sentence set (``sentences.txt``: every rule, with expected labels), on the 4
real CheXpert-labeler examples of the shared sample data (skipped when it is absent), and its
aggregation and outputs."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxr_tf.label import label_one, label_reports
from cxr_tf.label.engine import vocabulary

HERE = Path(__file__).parent


def _cases():
    vocab, out = "chexpert", []
    for n, line in enumerate((HERE / "sentences.txt").read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("@"):
            vocab = line[1:].strip()
            continue
        text, _, expected = line.partition("|")
        want = {}
        for item in filter(None, (x.strip() for x in expected.split(","))):
            name, _, state = item.partition("=")
            want[name.strip()] = float(state) if state.strip() else None
        out.append(pytest.param(vocab, text.strip(), want, id=f"{n}:{text.strip()[:40]}"))
    return out


CASES = _cases()


def test_the_set_covers_every_observation():
    assert len(CASES) >= 180
    for vocab in ("chexpert", "chestxray14"):
        seen = {k for p in CASES if p.values[0] == vocab for k in p.values[2]}
        wanted = set(vocabulary(vocab).order) - {"No Finding"}
        assert wanted <= seen, wanted - seen


@pytest.mark.parametrize("vocab,text,want", CASES)
def test_sentence(vocab, text, want):
    got = label_one(text, vocab, sections="all")
    check_no_finding = "No Finding" in want
    for name in vocabulary(vocab).order:
        if name == "No Finding" and not check_no_finding:
            continue
        assert got.get(name) == want.get(name), (name, got)


def _blank(x):
    return x is None or (isinstance(x, float) and math.isnan(x))


def test_reproduces_the_chexpert_labeler_examples(shared_dir):
    want = pd.read_csv(shared_dir / "reports" / "labeled_reports.csv")
    got = label_reports(want["Reports"])
    columns = [c for c in want.columns if c != "Reports"]
    assert columns == list(got.columns)                                   # the labeler's column order
    np.testing.assert_array_equal(got[columns].to_numpy(np.float64), want[columns].to_numpy(np.float64))


def test_chestxray14_output_is_nih_style():
    frame = label_reports(["Possible pneumonia. Small left effusion.", "Lungs are clear."], "chestxray14",
                          uncertain="negative")
    assert frame.loc[0, "Effusion"] == 1 and frame.loc[0, "Pneumonia"] == 0 and frame.loc[0, "No Finding"] == 0
    assert frame.loc[0, "Finding Labels"] == "Effusion" and frame.loc[1, "Finding Labels"] == "No Finding"
    assert frame.loc[1, "No Finding"] == 1 and not frame.drop(columns="Finding Labels").isna().any().any()
    positive = label_reports(["Possible pneumonia."], "chestxray14", uncertain="positive")
    assert positive.loc[0, "Pneumonia"] == 1 and positive.loc[0, "Finding Labels"] == "Pneumonia"
    kept = label_reports(["Possible pneumonia."], "chestxray14", uncertain="uncertain")
    assert kept.loc[0, "Pneumonia"] == -1 and kept.loc[0, "No Finding"] == 0


def test_sections_choose_the_impression():
    report = ("FINAL REPORT\nINDICATION: r/o pneumonia\n\nFINDINGS: There is a small left effusion.\n\n"
              "IMPRESSION:\n1. Small left pleural effusion.\n2. No pneumothorax.\n")
    assert label_one(report) == {"Pleural Effusion": 1.0, "Pneumothorax": 0.0}            # impression only
    both = label_one(report, sections="findings,impression")
    assert both == {"Pleural Effusion": 1.0, "Pneumothorax": 0.0}
    everything = label_one(report, sections="all")
    assert everything["Pneumonia"] == -1.0                                                # the indication counts
    no_impression = "EXAMINATION: CHEST\n\nFINDINGS: No pneumothorax.\n"
    assert label_one(no_impression) == {"Pneumothorax": 0.0, "No Finding": 1.0}
    conclusion = "History: cough.\n\nThe heart is enlarged.\n\nConclusion: cardiomegaly"
    assert label_one(conclusion) == {"Cardiomegaly": 1.0}
    last = "EXAMINATION: CHEST PA AND LAT\n\nINDICATION: cough\n\nSmall right effusion."
    assert label_one(last) == {"Pleural Effusion": 1.0}                                   # the last paragraph
    addendum = "IMPRESSION: No pneumothorax.\n" + "_" * 40 + "\nADDENDUM: small right apical pneumothorax."
    assert label_one(addendum)["Pneumothorax"] == 1.0                                     # addenda amend


def test_empty_and_non_text_reports():
    frame = label_reports(["", None, "   "])
    assert frame.isna().all().all()


def test_inline_section_headers():
    # OpenI and the CheXpert labeler's CSV join the sections on one line
    report = "FINDINGS: Small left effusion. No pneumothorax. IMPRESSION: Stable cardiomegaly."
    assert label_one(report) == {"Cardiomegaly": 1.0}                                  # chexpert: impression
    assert label_one(report, "chestxray14") == {"Effusion": 1.0, "Pneumothorax": 0.0, "Cardiomegaly": 1.0}
    assert label_one(report, sections="findings,impression")["Pleural Effusion"] == 1.0
    # a capitalised word that is not a header, and a lower-case one, stay text
    assert label_one("Heart size normal. The FINDINGS below: small effusion.") == {"Cardiomegaly": 0.0,
                                                                                  "Pleural Effusion": 1.0}
    assert label_one("IMPRESSION: see findings: no effusion.") == {"Pleural Effusion": 0.0, "No Finding": 1.0}


def _shipped_patterns():
    import tomllib

    from cxr_tf.label.engine import HERE

    found = []
    for name in ("rules", "chexpert", "chestxray14"):
        data = tomllib.loads((HERE / f"{name}.toml").read_text())

        def walk(node):
            if isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, list) and all(isinstance(p, str) for p in node):
                found.extend(p for p in node if "\\" in p or p in (",", ";"))
        walk({k: v for k, v in data.items() if k not in ("order", "no_finding_ignores", "conventions")})
    return found


def test_needles_never_reject_a_matching_text():
    import re

    from cxr_tf.label.engine import needles, sentences

    assert needles([r"\bmay (?:represent|be)\b"]) == {"may "}
    assert needles([r"\b(?:heart|cardiac) size\b"]) == {"heart", "cardiac"}
    assert needles([r"\b(?:o)?edema\b", r"\?"]) == {"edema", "?"}
    assert needles([r"\bno\b", r"\w+"]) is None                            # \w+ has no plain string
    texts = [s for line in (HERE / "sentences.txt").read_text().splitlines() if not line.startswith(("#", "@"))
             for s in sentences(line.partition("|")[0])]
    assert len(texts) > 250
    for p in _shipped_patterns():
        required = needles([p])
        for text in texts:
            if re.search(p, text):
                assert required is None or any(n in text for n in required), (p, text)


def test_fast_unions_match_the_plain_alternation_and_name_classes():
    import re

    from cxr_tf.label.engine import Classes, _compile_union, rules, sentences

    text = " ".join(sentences(" ".join(line.partition("|")[0] for line in
                                       (HERE / "sentences.txt").read_text().splitlines())))
    r = rules()
    for classes in [*r.kinds.values(), r.pseudo, r.terminators, r.negation_terminators]:
        plain = re.compile("|".join(f"(?:{p})" for name in classes.names
                                    for p in _table(classes)[name]))
        assert [m.span() for m in plain.finditer(text)] == [(a, b) for a, b, _ in classes.find(text)]
    assert _compile_union([]) is None
    hedges = Classes("uncertain_pre", {"possible": [r"\bpossibl[ey]\b"], "alternative": [r"\bversus\b", r"\?"]})
    assert hedges.find("possible effusion versus atelectasis?") == [(0, 8, "possible"), (18, 24, "alternative"),
                                                                     (36, 37, "alternative")]


def _table(classes):
    import tomllib

    from cxr_tf.label.engine import HERE

    data = tomllib.loads((HERE / "rules.toml").read_text())
    for key in ("uncertain_pre", "uncertain_post", "negation_pre", "negation_post", "pseudo", "terminators",
                "negation_terminators"):
        if list(data[key]) == classes.names:
            return data[key]
    raise AssertionError(classes.names)
